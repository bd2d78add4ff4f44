"""Several CLIP models judging one run, on two tiny CLIPs that take different crop sizes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from generator.contract.errors import SettingsError
from generator.contract.settings import DrawSettings, Job
from generator.method.engine import DrawResult, Engine, StepInfo
from generator.method.output import png_bytes, png_metadata
from generator.models.loaders import Models, load_models

from .conftest import ModelFiles
from .pictures import picture


@pytest.fixture(scope="module")
def clip_48_models(model_files: ModelFiles) -> Models:
    """The tiny-48 CLIP alone."""
    return load_models(
        str(model_files.clip_48_torchscript), str(model_files.decoder_pickle), device="cpu"
    )


def test_a_model_named_twice_is_loaded_once(model_files: ModelFiles, tmp_path: Path) -> None:
    clip = model_files.clip_torchscript
    alias = tmp_path / "the-same.pt"  # another path to the same file
    alias.symlink_to(clip)
    models = load_models(
        [str(clip), str(clip), str(alias), str(model_files.clip_48_torchscript), str(clip)],
        str(model_files.decoder_pickle),
        device="cpu",
    )
    assert models.clip_names == (str(clip), str(model_files.clip_48_torchscript))
    assert [c.visual.input_resolution for c in models.clips] == [32, 48]
    assert models.clip is models.clips[0]
    with pytest.raises(SettingsError, match="at least one CLIP model"):
        load_models([], str(model_files.decoder_pickle), device="cpu")


def test_two_models_draw_another_picture_than_either_alone(
    tiny_models: Models,
    clip_48_models: Models,
    two_clip_models: Models,
    small_settings: DrawSettings,
) -> None:
    job = Job("a lighthouse at night", 7, 6)
    drawn = [Engine(m, small_settings).draw(job) for m in (tiny_models, clip_48_models)]
    both = Engine(two_clip_models, small_settings).draw(job)
    for alone in drawn:
        assert not torch.equal(both.logits, alone.logits)
    assert not torch.equal(drawn[0].logits, drawn[1].logits)
    # The larger model sees the very crops it sees alone, so its first judgement is the same.
    assert both.model_losses[1][0] == pytest.approx(drawn[1].losses[0], abs=1e-6)


def test_each_model_loss_is_reported(
    two_clip_models: Models, tiny_models: Models, small_settings: DrawSettings
) -> None:
    seen: list[StepInfo] = []
    result = Engine(two_clip_models, small_settings).draw(
        Job("a cat | a dog:-0.5", 1, 5), seen.append
    )
    assert [info.model_losses.shape for info in seen] == [(2,)] * 5
    for info, loss in zip(seen, result.losses, strict=True):
        assert info.model_losses.sum().item() == pytest.approx(info.loss.item(), abs=1e-6)
        assert info.loss.item() == pytest.approx(loss)
    assert [len(history) for history in result.model_losses] == [5, 5]
    assert [a + b for a, b in zip(*result.model_losses, strict=True)] == pytest.approx(
        result.losses, abs=1e-6
    )
    assert result.model_losses[0] != result.model_losses[1]
    assert result.clip_models == two_clip_models.clip_names

    recorded = json.loads(png_metadata(result)["clip_models"])
    assert recorded == [
        {"model": "clip-torchscript.pt", "final_loss": result.model_losses[0][-1]},
        {"model": "clip-48.pt", "final_loss": result.model_losses[1][-1]},
    ]
    one = Engine(tiny_models, small_settings).draw(Job("a cat", 1, 3))
    assert one.model_losses == [one.losses]
    stopped = Engine(tiny_models, small_settings).draw(Job("a cat", 1, 3), None, lambda _: True)
    assert json.loads(png_metadata(stopped)["clip_models"])[0]["final_loss"] is None


def test_cutouts_are_cut_once_and_scaled_for_each_model(
    two_clip_models: Models, small_settings: DrawSettings
) -> None:
    """Each CLIP gets its own side, and the smaller one the larger one's crops scaled down."""
    seen: list[list[torch.Tensor]] = [[], []]
    hooks = [
        clip.visual.register_forward_pre_hook(
            lambda _, args, into=into: into.append(args[0].detach().clone())
        )
        for clip, into in zip(two_clip_models.clips, seen, strict=True)
    ]
    try:
        Engine(two_clip_models, small_settings).draw(Job("a cat", 1, 1))
    finally:
        for hook in hooks:
            hook.remove()
    (small,), (large,) = seen
    assert small.shape == (small_settings.cutouts, 3, 32, 32)
    assert large.shape == (small_settings.cutouts, 3, 48, 48)
    # Normalising by CLIP's mean and std commutes with bilinear scaling.
    scaled = F.interpolate(large, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(small, scaled, atol=1e-5)


def test_a_multilingual_prompt_needs_one_model(
    two_clip_models: Models, small_settings: DrawSettings
) -> None:
    engine = Engine(two_clip_models, small_settings)
    refusal = "the multilingual text encoder works with one CLIP model, and this run has 2"
    with pytest.raises(SettingsError, match=refusal):
        engine.draw(Job("夕焼けの海", 1, 1, text_encoder="multilingual"))
    with pytest.raises(SettingsError, match=refusal):
        two_clip_models.only_clip()


def _png(result: DrawResult) -> bytes:
    return png_bytes(result.image, png_metadata(result))


@pytest.mark.slow
def test_batched_jobs_equal_each_job_alone_with_two_models(
    two_clip_models: Models, small_settings: DrawSettings
) -> None:
    """Bit for bit on CPU, also for a job with an image prompt (embedded by each model)."""
    wide = dataclasses.replace(small_settings, width=96, flip=True, noise_std=0.05)
    jobs = [
        (Job("a cat", 1, 8), small_settings),
        (Job("a dog", 2, 4, image_prompts=(picture(3),)), small_settings),
        (Job("a wide landscape", 3, 5), wide),
    ]
    alone = [Engine(two_clip_models, settings).draw(job) for job, settings in jobs]
    batch = Engine(two_clip_models, small_settings).batch()
    results: dict[int, DrawResult] = {}
    batch.add(*jobs[0])
    results.update(batch.step())
    batch.add(*jobs[1])
    batch.add(*jobs[2])
    while batch:
        results.update(batch.step())
    for handle, single in enumerate(alone):
        assert torch.equal(results[handle].logits, single.logits)
        assert results[handle].model_losses == single.model_losses
        assert _png(results[handle]) == _png(single)


def test_stopped_at_k_equals_step_k_with_two_models(
    two_clip_models: Models, small_settings: DrawSettings
) -> None:
    engine = Engine(two_clip_models, small_settings)
    job = Job("a red bicycle", 11, 8)
    full = engine.draw(job)
    k = 3
    steps: list[int] = []
    stopped = engine.draw(job, lambda info: steps.append(info.step), lambda _: len(steps) == k)
    assert stopped.cancelled
    assert stopped.steps == k
    assert stopped.losses == full.losses[:k]
    assert stopped.model_losses == [history[:k] for history in full.model_losses]


def test_fused_jobs_with_two_models_agree_with_single_jobs(
    two_clip_models: Models, small_settings: DrawSettings
) -> None:
    """The GPU path, jobs fused into one forward pass per model: within 1e-4."""
    jobs = [Job("a cat", 1, 4), Job("a dog | a bone:0.5", 2, 3)]
    fused = Engine(two_clip_models, small_settings, fuse_jobs=True).run(jobs)
    for together, job in zip(fused, jobs, strict=True):
        single = Engine(two_clip_models, small_settings).draw(job)
        for mine, alone in zip(together.model_losses, single.model_losses, strict=True):
            assert mine == pytest.approx(alone, abs=1e-4)
