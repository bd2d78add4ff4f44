"""The step's layout, relaxations, host work and CUDA-graph fallback, on tiny models (CPU)."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from generator.contract.settings import DrawSettings, Job
from generator.method.engine import Engine
from generator.method.latent import gumbel_noise, initial_logits, relax
from generator.models.loaders import Models


class _OpCounter(TorchDispatchMode):
    """Counts every aten operation the host dispatches, and dtype casts of `weights` (by
    storage address) as "weight casts"."""

    def __init__(self, weights: set[int]) -> None:
        super().__init__()
        self.weights = weights
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.counts[str(func)] += 1
        source = args[0] if args else None
        if "_to_copy" in str(func) and isinstance(source, torch.Tensor):
            self.counts["weight casts"] += source.data_ptr() in self.weights
        return func(*args, **(kwargs or {}))


def _ops_of_steps(engine: Engine, settings: DrawSettings, steps: int) -> list[Counter[str]]:
    batch = engine.batch()
    batch.add(Job("an image of the music", 3, steps + 1), settings)
    counts = []
    for _ in range(steps):
        networks = engine.networks(settings)
        modules = [*engine.models.clips, engine.models.decoder, networks.decoder]
        modules += [e.encode for e in networks.encoders if isinstance(e.encode, torch.nn.Module)]
        weights = {p.data_ptr() for module in modules for p in module.parameters()}
        with _OpCounter(weights) as counter:
            batch.step()
        counts.append(counter.counts)
    return counts


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_step_does_no_host_work(
    tiny_models: Models, small_settings: DrawSettings, precision: str
) -> None:
    """No reads back from the device, no tensors made from Python data, no weight casts: the
    same operations every step, so a regression shows as a count that changed."""
    settings = dataclasses.replace(small_settings, precision=precision, temperature_end=0.5)
    # The first step builds the networks; the later ones must all look alike.
    _, second, third = _ops_of_steps(Engine(tiny_models, settings), settings, 3)
    assert second == third
    assert second["aten.lift_fresh.default"] == 0
    # One read of a number: Adam's step count, which non-capturable Adam keeps on the CPU (on
    # CUDA with graphs Adam is capturable and keeps it on the device); nothing else.
    assert second["aten._local_scalar_dense.default"] == 1
    # Autocast cast every weight of CLIP on every call; now weights are cast once, up front.
    assert second["weight casts"] == 0


def test_a_step_with_two_models_does_no_host_work(
    two_clip_models: Models, small_settings: DrawSettings
) -> None:
    """Two CLIPs taking different sides (the crops scaled for one of them): still nothing read
    back but Adam's step count, nothing made from Python data, no weight cast."""
    settings = dataclasses.replace(small_settings, precision="bf16")
    _, second, third = _ops_of_steps(Engine(two_clip_models, settings), settings, 3)
    assert second == third
    assert second["aten.upsample_bilinear2d.default"] == 1
    assert second["aten.lift_fresh.default"] == 0
    assert second["aten._local_scalar_dense.default"] == 1
    assert second["weight casts"] == 0


def test_codebook_relaxation_is_a_channels_last_view(tiny_models: Models) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = initial_logits(tiny_models.vocab_size, (4, 6), 1.0, generator)  # (1, h, w, V)
    noise = gumbel_noise(logits.shape, generator)
    soft = relax(logits, noise, 0.5, "codebook")
    assert soft.shape == (1, tiny_models.vocab_size, 4, 6)
    assert soft.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(soft.sum(dim=1), torch.ones(1, 4, 6))
    expected = torch.softmax((logits + noise).permute(0, 3, 1, 2) / 0.5, dim=1)
    assert torch.allclose(soft, expected, atol=1e-6)


def test_positions_relaxation_is_the_seed_notebooks_softmax(tiny_models: Models) -> None:
    generator = torch.Generator().manual_seed(0)
    vocab = tiny_models.vocab_size
    logits = initial_logits(vocab, (4, 6), 1.0, generator)
    noise = gumbel_noise(logits.shape, generator)
    soft = relax(logits, noise, 0.5, "positions")
    channels_first = ((logits + noise) / 0.5).permute(0, 3, 1, 2).contiguous()
    seed = torch.softmax(channels_first.view(1, vocab, -1), dim=-1).view(1, vocab, 4, 6)
    assert soft.shape == (1, vocab, 4, 6)
    assert torch.allclose(soft, seed, atol=1e-6)
    assert torch.allclose(soft.sum(dim=(2, 3)), torch.ones(1, vocab))


def test_positions_relaxation_draws(tiny_models: Models, small_settings: DrawSettings) -> None:
    settings = dataclasses.replace(small_settings, relaxation="positions")
    result = Engine(tiny_models, settings).draw(Job("an image of the music", 1, 4))
    codebook = Engine(tiny_models, small_settings).draw(Job("an image of the music", 1, 4))
    assert result.steps == 4
    assert result.settings.relaxation == "positions"
    assert result.losses != codebook.losses


def test_latents_saved_in_the_old_layout_continue_the_same(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    """Latents written before the layout change were (1, V, h, w); they continue exactly as
    today's (1, h, w, V) ones."""
    engine = Engine(tiny_models, small_settings)
    earlier = engine.draw(Job("a cat", 1, 3))
    old_layout = earlier.logits.permute(0, 3, 1, 2).contiguous()
    assert old_layout.shape == (1, tiny_models.vocab_size, 8, 8)
    today = engine.draw(Job("a cat", 2, 3, init_logits=earlier.logits))
    before = engine.draw(Job("a cat", 2, 3, init_logits=old_layout))
    assert torch.equal(today.logits, before.logits)
    assert today.losses == before.losses


def test_a_failed_capture_runs_eagerly(
    tiny_models: Models, small_settings: DrawSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """CUDA graphs asked for where none can be captured (here: no CUDA at all): one log line,
    then the same pictures as the eager engine draws."""
    job = Job("an image of the music", 5, 4)
    eager = Engine(tiny_models, small_settings, cuda_graphs=False).draw(job)
    engine = Engine(tiny_models, small_settings, cuda_graphs=True)
    with caplog.at_level(logging.WARNING, logger="pseudo_dalle.engine"):
        graphed = engine.draw(job)
        again = engine.draw(job)
    assert [r.message for r in caplog.records if "CUDA graphs are off" in r.message] != []
    assert len(caplog.records) == 1
    assert not engine.cuda_graphs
    for result in (graphed, again):
        assert torch.equal(result.logits, eager.logits)
        assert result.losses == eager.losses
