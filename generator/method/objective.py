"""The objective: weighted cosine similarity between cutout and prompt embeddings in CLIP space."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from generator.contract.prompts import WeightedPrompt
from generator.contract.tokens import check_lengths
from generator.models.loaders import CLIP_MEAN, CLIP_STD

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip


def tokenize(prompts: tuple[WeightedPrompt, ...], context_length: int) -> torch.Tensor:
    """CLIP tokens (P, context) for the prompts; PromptError when one is too long."""
    check_lengths(prompts)
    tokens: torch.Tensor = clip.tokenize([p.text for p in prompts], context_length=context_length)
    return tokens


@torch.no_grad()
def embed_prompts(clip_model: Any, prompts: tuple[WeightedPrompt, ...]) -> torch.Tensor:
    """Unit-length text embeddings (P, D) for the prompts."""
    device = clip_model.token_embedding.weight.device
    tokens = tokenize(prompts, int(clip_model.context_length)).to(device)
    return F.normalize(clip_model.encode_text(tokens).float(), dim=-1)


@functools.cache
def _clip_pixel_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP's mean and std (1, 3, 1, 1) on `device`, made once rather than copied every step."""
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    return mean, std


def embed_cutouts(
    encoder: Callable[..., torch.Tensor],
    cutouts: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Unit-length image embeddings: cutouts (M, 3, s, s) in [0, 1] -> (M, D) in fp32.

    `encoder` is CLIP's image encoder (`clip_model.visual`, or `fast.image_encoder`'s cast,
    checkpointed or compiled version of it) and `dtype` the dtype it computes in.
    """
    mean, std = _clip_pixel_stats(cutouts.device)
    embeds = encoder(((cutouts - mean) / std).to(dtype))
    return F.normalize(embeds.float(), dim=-1)


def weighted_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Per-job loss (B,): minus the weighted mean cosine similarity over cutouts.

    image_embeds (B, N, D), text_embeds (B, P, D) and weights (B, P); padding prompts have
    weight 0.
    """
    similarity = torch.einsum("bnd,bpd->bp", image_embeds, text_embeds) / image_embeds.shape[1]
    return -(similarity * weights).sum(dim=1)
