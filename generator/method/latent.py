"""The latent: logits over the decoder's codebook, relaxed to soft one-hots and decoded.

Logits live as (B, h, w, V), the codebook last. The Gumbel-softmax over the codebook is then a
softmax over the last, contiguous dimension, which every backend runs with its fast kernel (on
an H100 the same softmax over dimension 1 of a (1, V, h, w) tensor took 14 ms a step, over the
last dimension 0.6 ms). Permuting (B, h, w, V) to (B, V, h, w) is a channels-last view of the
same memory, which is the layout the decoder computes in, so no copy is made.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from dall_e import unmap_pixels

# The relaxations (settings.RELAXATIONS). "codebook": each position becomes a soft one-hot over
# the codebook, a relaxation of the token grid the decoder was trained on. "positions": each
# codebook entry is spread over the positions (the seed notebooks' `softmax(logits.view(1,
# 8192, -1), dim=-1)`), which is what made the seed's pictures.


def initial_logits(
    vocab: int, grid: tuple[int, int], scale: float, generator: torch.Generator
) -> torch.Tensor:
    """Logits of random one-hot tokens: (1, rows, cols, vocab), `scale` on the chosen token."""
    device = generator.device
    tokens = torch.randint(vocab, (1, *grid), generator=generator, device=device)
    return F.one_hot(tokens, vocab).float() * scale  # (1, h, w, V)


def as_latent(logits: torch.Tensor, vocab: int, grid: tuple[int, int]) -> torch.Tensor:
    """Saved logits in today's layout (1, h, w, V); those saved before it, (1, V, h, w), are
    transposed. ValueError for anything else."""
    shape = tuple(logits.shape)
    if shape == (1, *grid, vocab):
        return logits
    if shape == (1, vocab, *grid):
        return logits.permute(0, 2, 3, 1)
    raise ValueError(f"init_logits has shape {shape}, expected {(1, *grid, vocab)}")


def gumbel_noise(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise, -log(E) with E ~ Exp(1), drawn from `generator`."""
    exp = torch.empty(shape, device=generator.device).exponential_(generator=generator)
    return -exp.log()


def relax(
    logits: torch.Tensor,
    noise: torch.Tensor,
    temperature: float | torch.Tensor,
    relaxation: str,
) -> torch.Tensor:
    """Gumbel-softmax: logits (B, h, w, V) -> soft tokens (B, V, h, w) for the decoder."""
    z = (logits + noise) / temperature  # (B, h, w, V)
    if relaxation == "codebook":
        return torch.softmax(z, dim=-1).permute(0, 3, 1, 2)  # a channels-last view, no copy
    batch, rows, cols, vocab = z.shape
    # Over the positions: transpose so that they are the last, contiguous dimension (one copy
    # each way), rather than a softmax over a strided dimension.
    spread = torch.softmax(z.reshape(batch, rows * cols, vocab).transpose(1, 2), dim=-1)
    return spread.reshape(batch, vocab, rows, cols)


def hard_one_hot(logits: torch.Tensor) -> torch.Tensor:
    """The most likely token at each position: (B, h, w, V) -> one-hots (B, V, h, w)."""
    tokens = logits.argmax(dim=-1)
    return F.one_hot(tokens, logits.shape[-1]).float().permute(0, 3, 1, 2)


def decode(decoder: Callable[..., torch.Tensor], soft_tokens: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1]: (B, V, h, w) -> (B, 3, 8h, 8w)."""
    out = decoder(soft_tokens)  # (B, 2 * channels, 8h, 8w): means then log-scales
    result: torch.Tensor = unmap_pixels(torch.sigmoid(out[:, :3].float()))
    return result


# What Continue keeps of a finished job: at each position the chosen token and how sure the
# logits were of it, as the logit that one-hot needs for the same probability. About 16 KB for
# a 64x64 grid (512x512 pixels) instead of 134 MB of logits. The finished picture is decoded
# from exactly these tokens (`hard_one_hot`), so a continued job starts from the picture shown.
STATE_MAGIC = b"PDC1"
_STATE_HEADER = struct.Struct("<4sHHH")  # magic, rows, columns, vocabulary
_MIN_SCALE, _MAX_SCALE = 0.01, 30.0  # above 0 so that the argmax stays the stored token


def pack_state(logits: torch.Tensor) -> bytes:
    """(1, h, w, V) logits -> tokens (h*w int16) and their one-hot scales (h*w fp16)."""
    _, rows, cols, vocab = logits.shape
    probabilities = torch.softmax(logits[0].detach().float().cpu(), dim=-1)  # (h, w, V)
    top, tokens = probabilities.max(dim=-1)  # (h, w) each
    top = top.clamp(max=1 - 1e-7)
    # The logit s with softmax([s, 0, ..., 0])[0] == top: s = log(top * (V - 1) / (1 - top)).
    scales = torch.log(top * (vocab - 1) / (1 - top)).clamp(_MIN_SCALE, _MAX_SCALE)
    header = _STATE_HEADER.pack(STATE_MAGIC, rows, cols, vocab)
    tokens_le = tokens.to(torch.int16).numpy().astype("<i2").tobytes()
    scales_le = scales.to(torch.float16).numpy().astype("<f2").tobytes()
    return header + tokens_le + scales_le


def unpack_state(data: bytes, vocab: int, grid: tuple[int, int]) -> torch.Tensor:
    """`pack_state`'s bytes -> (1, h, w, V) logits: each position a scaled one-hot.
    ValueError, saying what is wrong, for anything else."""
    if len(data) < _STATE_HEADER.size or data[:4] != STATE_MAGIC:
        raise ValueError("the saved state is not a continue state")
    _, rows, cols, saved_vocab = _STATE_HEADER.unpack_from(data)
    if (rows, cols) != grid or saved_vocab != vocab:
        raise ValueError(
            f"the saved state is for a {cols * 8}x{rows * 8} picture with {saved_vocab} tokens, "
            f"not {grid[1] * 8}x{grid[0] * 8} with {vocab}"
        )
    cells = rows * cols
    if len(data) != _STATE_HEADER.size + 4 * cells:
        raise ValueError("the saved state is cut short or too long")
    body = memoryview(data)[_STATE_HEADER.size :]
    tokens = torch.from_numpy(np.frombuffer(body[: 2 * cells], dtype="<i2").astype(np.int64))
    scales = torch.from_numpy(np.frombuffer(body[2 * cells :], dtype="<f2").astype(np.float32))
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab or not bool(scales.isfinite().all()):
        raise ValueError("the saved state holds tokens or scales out of range")
    logits = F.one_hot(tokens, vocab).float() * scales[:, None]  # (h*w, V)
    return logits.view(1, rows, cols, vocab)
