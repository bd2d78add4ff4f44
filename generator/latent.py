"""The latent: logits over the decoder's codebook, relaxed to soft one-hots and decoded."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from dall_e import unmap_pixels


def initial_logits(
    vocab: int, grid: tuple[int, int], scale: float, generator: torch.Generator
) -> torch.Tensor:
    """Logits of random one-hot tokens: (1, vocab, rows, cols), `scale` on the chosen token."""
    device = generator.device
    tokens = torch.randint(vocab, (1, *grid), generator=generator, device=device)
    one_hot = F.one_hot(tokens, vocab).permute(0, 3, 1, 2)  # (1, h, w, V) -> (1, V, h, w)
    return one_hot.float() * scale


def gumbel_noise(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise, -log(E) with E ~ Exp(1), drawn from `generator`."""
    exp = torch.empty(shape, device=generator.device).exponential_(generator=generator)
    return -exp.log()


def relax(
    logits: torch.Tensor, noise: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """Gumbel-softmax over the codebook: (B, V, h, w) -> soft one-hots (B, V, h, w)."""
    return torch.softmax((logits + noise) / temperature, dim=1)


def hard_one_hot(logits: torch.Tensor) -> torch.Tensor:
    """The most likely token at each position, one-hot: (B, V, h, w) -> (B, V, h, w)."""
    tokens = logits.argmax(dim=1)
    return F.one_hot(tokens, logits.shape[1]).permute(0, 3, 1, 2).float()


def decode(decoder: Callable[..., torch.Tensor], soft_tokens: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1]: (B, V, h, w) -> (B, 3, 8h, 8w)."""
    out = decoder(soft_tokens)  # (B, 2 * channels, 8h, 8w): means then log-scales
    result: torch.Tensor = unmap_pixels(torch.sigmoid(out[:, :3].float()))
    return result
