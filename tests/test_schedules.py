"""The schedules of a run: the learning-rate drop, auto-stop, lr 0 and the cut schedule.
Tiny real models, fixed seeds."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from generator.contract.errors import SettingsError
from generator.contract.settings import DrawSettings, Job
from generator.method.cutouts import cutout_transforms
from generator.method.engine import Engine, StepInfo
from generator.models.loaders import Models

SETTINGS = DrawSettings(width=64, height=64, cutouts=4)


def _largest_moves(engine: Engine, job: Job) -> list[float]:
    """The largest change of any logit at each step."""
    moves: list[float] = []
    previous: list[torch.Tensor] = []

    def on_step(info: StepInfo) -> None:
        if previous:
            moves.append(float((info.logits - previous[0]).abs().max()))
        previous[:] = [info.logits.clone()]

    engine.draw(job, on_step)
    return moves


def test_the_learning_rate_drops_tenfold_at_the_fraction_given(tiny_models: Models) -> None:
    engine = Engine(tiny_models, dataclasses.replace(SETTINGS, lr_drop=0.5))
    moves = _largest_moves(engine, Job("a cat", 1, 12))
    # moves[i] is the update of 0-based step i + 1; the drop starts at step int(0.5 * 12) = 6.
    assert [move < 0.02 for move in moves] == [False] * 5 + [True] * 6, moves
    assert min(moves[:5]) > 0.05
    steady = _largest_moves(
        Engine(tiny_models, dataclasses.replace(SETTINGS, lr_drop=None)), Job("a cat", 1, 12)
    )
    assert min(steady) > 0.05


@pytest.mark.slow
def test_lr_0_renders_its_start_and_auto_stop_ends_a_run_that_cannot_improve(
    tiny_models: Models,
) -> None:
    engine = Engine(tiny_models, dataclasses.replace(SETTINGS, lr=0.0))
    start = engine.draw(Job("a cat", 4, 1))
    still = engine.draw(Job("a cat", 4, 300, auto_stop=3))
    assert torch.equal(still.logits, start.logits)
    assert still.auto_stopped
    assert not still.cancelled
    assert still.steps < 300
    assert still.steps % 10 == 0
    full = engine.draw(Job("a cat", 4, 30))
    assert (full.steps, full.auto_stopped) == (30, False)


@pytest.mark.slow
def test_auto_stop_lets_an_improving_run_go_on(tiny_models: Models) -> None:
    engine = Engine(tiny_models, SETTINGS)
    result = engine.draw(Job("a cat", 4, 40, auto_stop=3))
    assert (result.steps, result.auto_stopped) == (40, False)


def test_the_cut_schedule_goes_from_the_whole_picture_to_small_crops(
    tiny_models: Models,
) -> None:
    scheduled = SETTINGS
    assert scheduled.cut_schedule == "coarse-to-fine"
    assert scheduled.cut_size_at(0, 100) == scheduled.cut_size_max
    assert scheduled.cut_size_at(99, 100) == scheduled.cut_size_min
    fixed = dataclasses.replace(SETTINGS, cut_schedule="fixed")
    assert fixed.cut_size_at(0, 100) == fixed.cut_size_at(99, 100) == fixed.cut_size_mean

    def mean_side(mean: float) -> float:
        generator = torch.Generator().manual_seed(0)
        wide = dataclasses.replace(SETTINGS, cutouts=256, cut_size_std=0.0)
        theta = cutout_transforms(wide, generator, torch.device("cpu"), torch.tensor(mean))
        return float(theta[:, 0, 0].mean())

    assert mean_side(0.95) == pytest.approx(0.95)
    assert mean_side(0.55) == pytest.approx(0.55)
    engine = Engine(tiny_models, SETTINGS)
    coarse = engine.draw(Job("a cat", 2, 6)).logits
    same_mix = Engine(tiny_models, fixed).draw(Job("a cat", 2, 6)).logits
    assert not torch.equal(coarse, same_mix)


def test_schedules_are_validated() -> None:
    with pytest.raises(SettingsError, match="lr_drop must be a fraction"):
        DrawSettings(lr_drop=1.0)
    with pytest.raises(SettingsError, match="cut_schedule must be one of"):
        DrawSettings(cut_schedule="random")
    with pytest.raises(SettingsError, match="lr must be in"):
        DrawSettings(lr=-0.1)
    with pytest.raises(SettingsError, match="auto_stop must be from 1"):
        Job("a cat", 1, 10, auto_stop=0)
