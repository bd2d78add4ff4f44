"""The networks as the engine runs them: the decoder rebuilt once per precision, and each CLIP
model's image encoder with optional activation checkpointing, all optionally compiled with
`torch.compile`.

`dall_e.Decoder` keeps fp32 weights and, on CUDA, casts them to fp16 inside every convolution
call, on every step. `FastDecoder` holds the same weights as plain `nn.Conv2d` layers, cast once
to the compute dtype and stored channels-last, and computes exactly the dall_e graph: the input
projection from the codebook in fp32 (as dall_e does), then the residual groups in the compute
dtype. CLIP's attention already goes through PyTorch's fused scaled-dot-product attention:
`ResidualAttentionBlock` calls `nn.MultiheadAttention` with `need_weights=False`, which uses
`F.scaled_dot_product_attention` (tests/test_fast.py checks that it does). CLIP's image encoder
is copied once per precision with its matrix weights cast (LayerNorms stay fp32): autocast
would cast every weight again on every call, hundreds of copies a step.

Checkpointing keeps only each residual block's input during the forward pass and recomputes
the block during the backward pass: about a third more compute for a fraction of the memory.

Compiling fuses the element-wise work between the big kernels (ReLUs, residual adds, layer
norms, GELUs). It costs tens of seconds on the first step of each new shape and is off by
default: bench/RESULTS.md records where it pays.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _conv(
    source: Any, dtype: torch.dtype, memory_format: torch.memory_format, wrap: str = ""
) -> nn.Module:
    """A `dall_e.utils.Conv2d` as a frozen `nn.Conv2d` with its weights in `dtype`, its
    padding circular along the axes in `wrap` (`DrawSettings.tile`)."""
    weight, bias = source.w.detach(), source.b.detach()
    n_out, n_in, kernel = weight.shape[0], weight.shape[1], weight.shape[2]
    pad = (kernel - 1) // 2
    conv = nn.Conv2d(n_in, n_out, kernel, padding=0 if wrap else pad, device=weight.device)
    conv.weight = nn.Parameter(
        weight.to(dtype).contiguous(memory_format=memory_format), requires_grad=False
    )
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
    return _Wrapped(conv, pad, wrap) if wrap and pad else conv


class _Wrapped(nn.Module):
    """A convolution whose input is padded circularly along the axes in `wrap` and with zeros
    along the others, so that a picture tiles seamlessly along those axes. (dall_e's own
    `Conv2d` pads with zeros in its forward, whatever `padding_mode` says.)"""

    def __init__(self, conv: nn.Conv2d, pad: int, wrap: str) -> None:
        super().__init__()
        self.conv, self.pad = conv, pad
        self.wrap_x, self.wrap_y = "x" in wrap, "y" in wrap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        if self.wrap_x and self.wrap_y:  # one pad, not two: a launch less per convolution
            x = F.pad(x, (p, p, p, p), mode="circular")
        else:
            x = F.pad(x, (p, p, 0, 0), mode="circular" if self.wrap_x else "constant")
            x = F.pad(x, (0, 0, p, p), mode="circular" if self.wrap_y else "constant")
        result: torch.Tensor = self.conv(x)
        return result


class _Block(nn.Module):
    """`dall_e.decoder.DecoderBlock`: identity (or a 1x1 projection) plus a gained residual."""

    def __init__(
        self, block: Any, dtype: torch.dtype, memory_format: torch.memory_format, wrap: str
    ) -> None:
        super().__init__()
        identity = block.id_path
        self.id_path = (
            None if isinstance(identity, nn.Identity) else _conv(identity, dtype, memory_format)
        )
        res = block.res_path
        self.res_path = nn.Sequential(
            nn.ReLU(),
            _conv(res.conv_1, dtype, memory_format, wrap),
            nn.ReLU(),
            _conv(res.conv_2, dtype, memory_format, wrap),
            nn.ReLU(),
            _conv(res.conv_3, dtype, memory_format, wrap),
            nn.ReLU(),
            _conv(res.conv_4, dtype, memory_format, wrap),
        )
        self.post_gain = float(block.post_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.id_path is None else self.id_path(x)
        result: torch.Tensor = identity + self.post_gain * self.res_path(x)
        return result


class FastDecoder(nn.Module):
    """The dVAE decoder with weights cast once to `dtype`, channels-last, optionally checkpointed.

    Takes soft one-hots (B, V, h, w) in any float dtype; returns (B, 2 * channels, 8h, 8w) in
    `dtype`, like `dall_e.Decoder` (whose output on CUDA is fp16). With `wrap` ("x", "y" or
    "xy"), its convolutions wrap around those axes: the output tiles seamlessly.
    """

    def __init__(
        self,
        decoder: Any,
        dtype: torch.dtype = torch.float32,
        *,
        channels_last: bool = True,
        checkpointing: bool = False,
        wrap: str = "",
    ) -> None:
        super().__init__()
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.checkpointing = checkpointing
        blocks = decoder.blocks
        self.input = _conv(blocks.input, torch.float32, self.memory_format)
        stages: list[nn.Module] = []
        for name in ("group_1", "group_2", "group_3", "group_4"):
            for child in getattr(blocks, name).children():
                stages.append(
                    nn.Upsample(scale_factor=2, mode="nearest")
                    if isinstance(child, nn.Upsample)
                    else _Block(child, dtype, self.memory_format, wrap)
                )
        self.stages = nn.ModuleList(stages)
        self.output = _conv(blocks.output.conv, dtype, self.memory_format)

    def forward(self, soft_tokens: torch.Tensor) -> torch.Tensor:
        x = soft_tokens.float().contiguous(memory_format=self.memory_format)
        x = self.input(x).to(self.dtype)
        recompute = self.checkpointing and torch.is_grad_enabled()
        for stage in self.stages:
            if recompute and isinstance(stage, _Block):
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        result: torch.Tensor = self.output(F.relu(x))
        return result


def checkpointed_vit_forward(visual: Any, x: torch.Tensor) -> torch.Tensor:
    """`clip.model.VisionTransformer.forward` with each residual block checkpointed."""
    x = visual.conv1(x)  # (M, width, grid, grid)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (M, grid**2, width)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(
        x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device
    )
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x).permute(1, 0, 2)  # NLD -> LND
    for block in visual.transformer.resblocks:
        x = checkpoint(block, x, use_reentrant=False)
    x = visual.ln_post(x.permute(1, 0, 2)[:, 0, :])
    if visual.proj is not None:
        x = x @ visual.proj
    result: torch.Tensor = x
    return result


def cast_visual(visual: nn.Module, dtype: torch.dtype) -> nn.Module:
    """CLIP's image encoder with its matrix weights in `dtype`, cast once.

    The weights of convolutions, linear layers and attention, the projection and the class and
    position embeddings are cast, as `clip.model.convert_weights` does for fp16; LayerNorms
    (which CLIP computes in fp32 whatever its input) and BatchNorms keep fp32. fp32 returns
    `visual` itself; anything else is a copy, so the fp32 path stays as it was.
    """
    if dtype == torch.float32:
        return visual
    copied = copy.deepcopy(visual)

    def cast(module: nn.Module) -> None:
        names: list[str] = ["proj", "class_embedding", "positional_embedding"]
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            names += ["weight", "bias"]
        if isinstance(module, nn.MultiheadAttention):
            names += ["in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"]
            names += ["in_proj_bias", "bias_k", "bias_v"]
        for name in names:
            tensor = getattr(module, name, None)
            if isinstance(tensor, torch.Tensor):
                tensor.data = tensor.data.to(dtype)

    copied.apply(cast)
    return copied


def image_encoder(visual: Any, *, checkpointing: bool = False) -> Callable[..., torch.Tensor]:
    """CLIP's image encoder, with its residual blocks checkpointed if asked and it is a ViT
    (ResNet CLIPs run unchanged)."""
    if checkpointing and hasattr(visual, "transformer"):
        return partial(checkpointed_vit_forward, visual)
    encoder: Callable[..., torch.Tensor] = visual
    return encoder


@dataclass(frozen=True)
class ImageEncoder:
    """One CLIP model's image encoder and the side of the square crops it takes."""

    encode: Callable[..., torch.Tensor]
    resolution: int


@dataclass(frozen=True)
class Networks:
    """The networks for one precision and choice of checkpointing and compiling."""

    decoder: FastDecoder  # uncompiled, for one-off decodes such as the final picture
    decode: Callable[..., torch.Tensor]  # the decoder as the steps call it
    encoders: tuple[ImageEncoder, ...]  # each CLIP's image encoder as the steps call it
    encode_dtype: torch.dtype  # what every encoder takes and computes in

    @property
    def cut_side(self) -> int:
        """The side cutouts are made at: the largest any encoder takes, so that each smaller
        one gets the same crops scaled down rather than crops cut again."""
        return max(encoder.resolution for encoder in self.encoders)


def build_networks(
    decoder: Any,
    visuals: Sequence[Any],
    precision: str,
    *,
    checkpointing: bool = False,
    compile_them: bool = False,
    wrap: str = "",
) -> Networks:
    """The decoder (wrapping around the axes in `wrap`) and the image encoders of CLIP models
    (`visuals`, each a CLIP's `.visual`) with weights cast to `precision` once, compiled if
    `compile_them`. Nothing is cast per call: no autocast."""
    dtype = DTYPES[precision]
    fast = FastDecoder(decoder, dtype, channels_last=True, checkpointing=checkpointing, wrap=wrap)
    encoders = []
    for visual in visuals:
        encode = image_encoder(cast_visual(visual, dtype), checkpointing=checkpointing)
        resolution = int(visual.input_resolution)
        encoders.append(ImageEncoder(torch.compile(encode) if compile_them else encode, resolution))
    return Networks(fast, torch.compile(fast) if compile_them else fast, tuple(encoders), dtype)


def auto_precision(device: torch.device) -> str:
    """The fastest precision `device` computes natively: bf16 on GPUs and CPUs that have it,
    fp16 on older GPUs, fp32 on CPUs without bf16 instructions (where bf16 is emulated)."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16"
    return "fp32"


def resolve_precision(choice: str, device: torch.device) -> str:
    """A precision from `PRECISION_CHOICES` made concrete for `device`."""
    return auto_precision(device) if choice == "auto" else choice
