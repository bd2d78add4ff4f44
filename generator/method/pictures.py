"""Pictures as inputs: start the latent from a picture's tokens, or steer towards a picture.

Starting: the picture is fitted to the output (scaled to cover it, centre-cropped), mapped with
`dall_e.map_pixels` and encoded by the dVAE encoder; the most likely token per position is the
start. How firmly it holds is the strength s in [0, 1], which sets two things:

- the starting gap between the picture's token and the others, from the random start's
  `init_scale` at s = 0 up to `GAP_AT_FULL` at s = 1. paraphernalia's start, log(one_hot +
  1e-3 / V), is a gap of about 16 that Adam at lr 0.1 cannot overturn for some 80 steps, so a
  gap that size alone would make every strength look alike in a short run;
- the weight of a constant anchor, a cross-entropy between the latent's tokens and the
  picture's, `ANCHOR_AT_FULL * s**2`: zero at s = 0, so the first steps may move away freely,
  and strong enough at s = 1 that the picture's tokens hold through the run. The numbers come
  from bench/bench_pictures.py (bench/RESULTS.md).

Steering: the picture is cut into the same kind of random crops the output gets, once, when the
job starts (VQGAN-CLIP's way); for each CLIP model, the mean of their embeddings joins the text
prompts' as one more weighted target. Cutting it again at every step (pixray's way) doubles
CLIP's forward work per image prompt for crops that line up exactly; docs/pictures.md says why
once is the default.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from dall_e import map_pixels
from PIL import Image, ImageOps

from generator.contract.errors import SettingsError
from generator.contract.images import MAX_INPUT_SIDE
from generator.contract.settings import DrawSettings
from generator.method.cutouts import cutout_transforms, make_cutouts, resized
from generator.method.fast import ImageEncoder
from generator.method.objective import embed_cutouts

GAP_AT_FULL = 16.0
ANCHOR_AT_FULL = 50.0


def fitted_pixels(png: bytes, width: int, height: int, device: torch.device) -> torch.Tensor:
    """The picture scaled to cover width x height and centre-cropped: (1, 3, H, W) in [0, 1].

    `png` is `generator.intake`'s copy; anything larger than such a copy is refused before
    its pixels are decoded (a job's pictures may come from any client of the queue).
    """
    with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
        if max(image.size) > MAX_INPUT_SIDE:
            raise SettingsError(
                f"an input picture is {image.width}x{image.height}; at most {MAX_INPUT_SIDE} "
                "on a side is taken"
            )
        fitted = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    pixels = torch.frombuffer(bytearray(fitted.tobytes()), dtype=torch.uint8)
    return (pixels.view(height, width, 3).permute(2, 0, 1)[None].float() / 255).to(device)


@torch.no_grad()
def picture_tokens(encoder: Callable[..., torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    """The encoder's most likely token per position: (1, 3, H, W) -> (1, H/8, W/8)."""
    logits = encoder(map_pixels(pixels))  # (1, V, h, w)
    return logits.argmax(dim=1)


def start_gap(strength: float, floor: float) -> float:
    """The logit of the picture's token over the others at the start."""
    return floor + strength * (GAP_AT_FULL - floor)


def anchor_weight(strength: float) -> float:
    return ANCHOR_AT_FULL * strength**2


def start_logits(tokens: torch.Tensor, vocab: int, gap: float) -> torch.Tensor:
    """Tokens (1, h, w) -> logits (1, h, w, V), `gap` on each position's token."""
    return F.one_hot(tokens, vocab).float() * gap


def anchor_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the latent's tokens against the picture's.

    logits (1, h, w, V) and tokens (1, h, w) -> a 0-d mean over the positions.
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))


@torch.no_grad()
def picture_embeddings(
    encoders: Sequence[ImageEncoder],
    pixels: torch.Tensor,
    settings: DrawSettings,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, ...]:
    """For each CLIP's image encoder, the unit-length mean embedding (D,) of the picture's crops,
    cut once as the output's are (at the largest side any encoder takes, scaled for the rest)."""
    transforms = cutout_transforms(settings, generator, pixels.device)[None]  # (1, N, 2, 3)
    side = max(encoder.resolution for encoder in encoders)
    cutouts = make_cutouts(pixels, transforms, side)  # (N, 3, s, s)
    return tuple(
        F.normalize(
            embed_cutouts(encoder.encode, resized(cutouts, encoder.resolution), dtype).mean(dim=0),
            dim=0,
        )
        for encoder in encoders
    )
