"""The fast path against the plain one: same graph, stated tolerances, less memory when asked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from generator.contract.settings import PRECISIONS, DrawSettings, Job
from generator.method.engine import Engine
from generator.method.fast import FastDecoder, auto_precision, cast_visual, image_encoder
from generator.method.latent import decode, gumbel_noise, initial_logits, relax
from generator.method.objective import embed_cutouts
from generator.models.loaders import Models


def _soft_tokens(models: Models, seed: int = 0, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.cat(
        [initial_logits(models.vocab_size, (8, 8), 1.0, generator) for _ in range(batch)]
    )
    # (B, V, h, w) in the plain layout, as dall_e's decoder is usually fed.
    return relax(logits, gumbel_noise(logits.shape, generator), 1.0, "codebook").contiguous()


def test_fp32_fast_decoder_is_the_dall_e_decoder(tiny_models: Models) -> None:
    soft = _soft_tokens(tiny_models)
    with torch.no_grad():
        plain = tiny_models.decoder(soft)
        same_layout = FastDecoder(tiny_models.decoder, channels_last=False)(soft)
        channels_last = FastDecoder(tiny_models.decoder)(soft)
    assert same_layout.dtype == torch.float32
    assert torch.equal(same_layout, plain)
    assert (channels_last - plain).abs().max().item() <= 1e-5


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_agrees_with_fp32(tiny_models: Models, precision: str) -> None:
    """Tolerances: pixels within 0.02, cutout embeddings' cosine >= 0.999."""
    soft = _soft_tokens(tiny_models)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    fast_decoder = FastDecoder(tiny_models.decoder, dtype)
    assert {p.dtype for p in fast_decoder.stages.parameters()} == {dtype}
    with torch.no_grad():
        plain = decode(tiny_models.decoder, soft)
        fast = decode(fast_decoder, soft)
        crops = torch.nn.functional.interpolate(plain, (32, 32), mode="bilinear")
        plain_embeds = embed_cutouts(tiny_models.clip.visual, crops)
        cast = cast_visual(tiny_models.clip.visual, dtype)
        fast_embeds = embed_cutouts(cast, crops, dtype)
    layer_norms = {m.weight.dtype for m in cast.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert layer_norms == {torch.float32}
    conv_weights = {m.weight.dtype for m in cast.modules() if isinstance(m, torch.nn.Conv2d)}
    assert conv_weights == {dtype}
    assert tiny_models.clip.visual.conv1.weight.dtype == torch.float32  # a copy was cast
    assert fast.dtype == torch.float32
    assert (plain - fast).abs().max().item() <= 0.02
    cosine = torch.nn.functional.cosine_similarity(plain_embeds, fast_embeds)
    assert cosine.min().item() >= 0.999


@pytest.mark.slow
def test_engine_precisions_agree_on_the_loss(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    """Tolerance: the first step's loss (same tokens, noise and cutouts) within 0.01 of fp32."""
    job = Job("an image of the music", 4, 5)
    fp32 = Engine(tiny_models, small_settings).draw(job)
    for precision in ("bf16", "fp16"):
        fast = Engine(tiny_models, dataclasses.replace(small_settings, precision=precision))
        result = fast.draw(job)
        assert result.losses[0] == pytest.approx(fp32.losses[0], abs=0.01)
        assert result.settings.precision == precision
        assert result.image.size == fp32.image.size


@pytest.mark.slow
def test_compiled_networks_agree_with_eager(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    """Tolerance: every step's loss within 1e-4 of the uncompiled run, the picture within 2/255
    per pixel (compiled kernels fuse and reorder float sums)."""
    job = Job("an image of the music", 4, 3)
    eager = Engine(tiny_models, small_settings).draw(job)
    engine = Engine(tiny_models, dataclasses.replace(small_settings, compile=True))
    compiled = engine.draw(job)
    assert compiled.losses == pytest.approx(eager.losses, abs=1e-4)
    difference = torch.tensor(
        [a - b for a, b in zip(compiled.image.tobytes(), eager.image.tobytes(), strict=True)]
    )
    assert difference.abs().max().item() <= 2
    networks = engine.networks(compiled.settings)
    assert networks.decode is not networks.decoder  # the steps ran the compiled decoder


@pytest.mark.slow
def test_compile_falls_back_to_eager_where_it_cannot_compile(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    torch._dynamo.reset()
    job = Job("an image of the music", 4, 3)
    eager = Engine(tiny_models, small_settings).draw(job)
    # torch's own patch puts the compiler back afterwards (monkeypatch's undo leaves the config
    # without it, and a later compile in this process fails).
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        fallback = Engine(tiny_models, dataclasses.replace(small_settings, compile=True)).draw(job)
    assert fallback.losses == eager.losses
    assert fallback.image.tobytes() == eager.image.tobytes()
    torch._dynamo.reset()


def _saved_bytes(run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Run a forward pass, counting the bytes autograd keeps for the backward pass."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = run()
    return out, total


def test_checkpointing_gives_the_same_gradients_with_less_kept(tiny_models: Models) -> None:
    soft = _soft_tokens(tiny_models)
    grads, kept = [], []
    for checkpointing in (False, True):
        tokens = soft.clone().requires_grad_()
        decoder = FastDecoder(tiny_models.decoder, checkpointing=checkpointing)

        def forward(
            tokens: torch.Tensor = tokens,
            decoder: FastDecoder = decoder,
            recompute: bool = checkpointing,
        ) -> torch.Tensor:
            images = decode(decoder, tokens)
            crops = torch.nn.functional.interpolate(images, (32, 32), mode="bilinear")
            encoder = image_encoder(tiny_models.clip.visual, checkpointing=recompute)
            return embed_cutouts(encoder, crops)

        embeds, saved = _saved_bytes(forward)
        embeds.sum().backward()
        assert tokens.grad is not None
        grads.append(tokens.grad)
        kept.append(saved)
    assert torch.equal(grads[0], grads[1])
    assert kept[1] < kept[0] / 2


class _OpNames(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.add(str(func))
        return func(*args, **(kwargs or {}))


def test_clip_attention_goes_through_fused_sdpa(tiny_models: Models) -> None:
    crops = torch.rand(4, 3, 32, 32, requires_grad=True)
    with _OpNames() as seen:
        embed_cutouts(tiny_models.clip.visual, crops).sum().backward()
    assert any("scaled_dot_product" in name for name in seen.names), sorted(seen.names)


def test_auto_precision_is_a_real_precision() -> None:
    assert auto_precision(torch.device("cpu")) in PRECISIONS
