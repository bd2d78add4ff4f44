"""The optimisation loop, on tiny real models."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from generator.contract.errors import PromptError
from generator.contract.settings import DrawSettings, Job
from generator.method.engine import DrawResult, Engine, StepInfo
from generator.method.output import png_bytes, png_metadata
from generator.models.loaders import Models


def _png(result: DrawResult) -> bytes:
    return png_bytes(result.image, png_metadata(result))


@pytest.mark.slow
def test_loss_falls(tiny_models: Models, small_settings: DrawSettings) -> None:
    result = Engine(tiny_models, small_settings).draw(Job("an image of the music", 3, 40))
    first, last = result.losses[:5], result.losses[-5:]
    assert sum(last) / 5 < sum(first) / 5 - 0.05
    assert result.steps == 40
    assert not result.cancelled
    assert result.image.size == (64, 64)
    assert result.logits.shape == (1, 8, 8, 512)


@pytest.mark.slow
def test_same_seed_same_png_other_seed_other_png(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    engine = Engine(tiny_models, small_settings)
    first = engine.draw(Job("a lighthouse at night", 7, 15))
    again = engine.draw(Job("a lighthouse at night", 7, 15))
    other = engine.draw(Job("a lighthouse at night", 8, 15))
    assert _png(first) == _png(again)
    assert torch.equal(first.logits, again.logits)
    assert first.image.tobytes() != other.image.tobytes()


def test_cancel_at_step_k_returns_step_k_of_the_full_run(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    settings = dataclasses.replace(small_settings, temperature_end=0.3, flip=True, noise_std=0.05)
    engine = Engine(tiny_models, settings)
    job = Job("a red bicycle", 11, 20)
    k = 7
    snapshots: dict[int, torch.Tensor] = {}

    def keep(info: StepInfo) -> None:
        snapshots[info.step] = info.logits.clone()

    full = engine.draw(job, keep)
    stop = False

    def stop_at_k(info: StepInfo) -> None:
        nonlocal stop
        stop = info.step == k

    cancelled = engine.draw(job, stop_at_k, lambda _: stop)
    assert cancelled.cancelled
    assert cancelled.steps == k
    assert torch.equal(cancelled.logits, snapshots[k])
    assert cancelled.losses == full.losses[:k]
    assert cancelled.image.tobytes() == engine.render(snapshots[k]).tobytes()


def test_stop_before_the_first_step_returns_the_initial_picture(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    result = Engine(tiny_models, small_settings).draw(Job("a cat", 1, 10), None, lambda _: True)
    assert result.cancelled
    assert result.steps == 0
    assert result.losses == []


def test_callback_gets_every_step_with_what_the_step_computed(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    seen: list[StepInfo] = []
    result = Engine(tiny_models, small_settings).draw(Job("a cat", 1, 6), seen.append)
    assert [info.step for info in seen] == [1, 2, 3, 4, 5, 6]
    assert {info.total for info in seen} == {6}
    assert [info.loss.item() for info in seen] == pytest.approx(result.losses)
    for info in seen:
        assert info.image.shape == (3, 64, 64)
        assert 0 <= info.image.min() <= info.image.max() <= 1
        assert not info.image.requires_grad


def _first_loss(engine: Engine, prompt: str) -> float:
    return engine.draw(Job(prompt, 5, 1)).losses[0]


def test_weighted_and_negative_prompts(tiny_models: Models, small_settings: DrawSettings) -> None:
    engine = Engine(tiny_models, small_settings)
    cat, dog = _first_loss(engine, "a cat"), _first_loss(engine, "a dog")
    assert _first_loss(engine, "a cat:0.5") == pytest.approx(0.5 * cat, abs=1e-6)
    assert _first_loss(engine, "a cat | a dog") == pytest.approx(cat + dog, abs=1e-6)
    assert _first_loss(engine, "a cat:1 | a dog:-0.5") == pytest.approx(cat - 0.5 * dog, abs=1e-6)


def test_continue_from_saved_logits(tiny_models: Models, small_settings: DrawSettings) -> None:
    engine = Engine(tiny_models, small_settings)
    earlier = engine.draw(Job("a cat", 1, 5))
    first_step: list[torch.Tensor] = []
    engine.draw(
        Job("a cat", 2, 1, init_logits=earlier.logits),
        lambda info: first_step.append(info.logits.clone()),
    )
    # Adam's first update moves each logit by at most about the learning rate.
    moved = (first_step[0] - earlier.logits).abs().max().item()
    assert moved <= small_settings.lr * 1.01
    with pytest.raises(ValueError, match="init_logits has shape"):
        engine.draw(Job("a cat", 2, 1, init_logits=torch.zeros(1, 512, 4, 4)))


def test_batch_of_jobs_each_with_its_own_length(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    steps: dict[int, list[int]] = {0: [], 1: []}
    jobs = [Job("a cat", 1, 3), Job("a dog | a bone:0.5", 2, 5)]
    results = Engine(tiny_models, small_settings).run(
        jobs, lambda info: steps[info.job_index].append(info.step)
    )
    assert [r.steps for r in results] == [3, 5]
    assert [r.job for r in results] == jobs
    assert steps == {0: [1, 2, 3], 1: [1, 2, 3, 4, 5]}


def test_non_square_picture(tiny_models: Models) -> None:
    settings = DrawSettings(width=96, height=64, cutouts=4, rotation_degrees=10)
    result = Engine(tiny_models, settings).draw(Job("a wide landscape", 1, 2))
    assert result.image.size == (96, 64)
    assert result.logits.shape == (1, 8, 12, 512)


def test_prompt_too_long_for_clip(tiny_models: Models, small_settings: DrawSettings) -> None:
    with pytest.raises(PromptError, match="too long for CLIP"):
        Engine(tiny_models, small_settings).draw(Job("word " * 100, 1, 1))


@pytest.mark.slow
def test_batched_jobs_equal_each_job_alone(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    """A job's picture does not depend on who it ran with or when it joined: bit for bit on CPU."""
    wide = dataclasses.replace(small_settings, width=96, flip=True)
    jobs = [
        (Job("a cat", 1, 12), small_settings),
        (Job("a dog | a bone:0.5", 2, 6), small_settings),
        (Job("a wide landscape", 3, 8), wide),
    ]
    alone = [Engine(tiny_models, settings).draw(job) for job, settings in jobs]
    batch = Engine(tiny_models, small_settings).batch()
    results: dict[int, DrawResult] = {}
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def record(info: StepInfo) -> None:
        seen[info.job_index].append(info.step)

    assert batch.add(*jobs[0]) == 0
    for _ in range(3):
        results.update(batch.step(record))
    assert [batch.add(*jobs[1]), batch.add(*jobs[2])] == [1, 2]  # joining at a step boundary
    assert len(batch) == 3
    while batch:
        results.update(batch.step(record))
    assert seen == {0: list(range(1, 13)), 1: list(range(1, 7)), 2: list(range(1, 9))}
    for handle, single in enumerate(alone):
        assert torch.equal(results[handle].logits, single.logits)
        assert results[handle].losses == single.losses
        assert _png(results[handle]) == _png(single)


def test_fused_batch_agrees_with_single_jobs(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    """The GPU path, jobs fused into one forward pass: the same losses within 1e-4."""
    jobs = [Job("a cat", 1, 6), Job("a dog | a bone:0.5", 2, 4)]
    fused = Engine(tiny_models, small_settings, fuse_jobs=True).run(jobs)
    alone = [Engine(tiny_models, small_settings).draw(job) for job in jobs]
    for together, single in zip(fused, alone, strict=True):
        assert together.steps == single.steps
        assert together.losses == pytest.approx(single.losses, abs=1e-4)


def test_a_job_that_cannot_start_leaves_the_batch_alone(
    tiny_models: Models, small_settings: DrawSettings
) -> None:
    batch = Engine(tiny_models, small_settings).batch()
    batch.add(Job("a cat", 1, 3))
    with pytest.raises(PromptError):
        batch.add(Job("word " * 100, 1, 1))
    with pytest.raises(ValueError, match="init_logits"):
        batch.add(Job("a cat", 1, 1, init_logits=torch.zeros(1, 512, 4, 4)))
    assert batch.handles == [0]
    batch.step()
    stopped = batch.stop(0)
    assert stopped.cancelled
    assert stopped.steps == 1
    assert not batch
