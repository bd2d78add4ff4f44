"""Prompts in other languages: a tiny multilingual encoder saved by sentence-transformers and
loaded through the real loader, the engine drawing with it, and the CLI's auto choice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generator.engine import Engine
from generator.errors import ModelLoadError, PromptError, SettingsError
from generator.loaders import Models
from generator.prompts import parse_prompts
from generator.settings import DrawSettings, Job
from generator.text_encoders import MultilingualEncoder, choose_encoder, load_multilingual

from .bot_harness import run, running_bot, text_of, wait_for_card, wait_for_job
from .conftest import ModelFiles
from .fake_discord import ALICE

CPU = torch.device("cpu")


def _load(path: Path | str, tmp_path: Path, **changes: object) -> MultilingualEncoder:
    arguments: dict[str, object] = {
        "clip_dim": 32, "clip_name": None, "device": CPU, "cache_dir": tmp_path, "offline": True,
    }  # fmt: skip
    arguments.update(changes)
    return load_multilingual(str(path), **arguments)  # type: ignore[arg-type]


def test_auto_uses_clip_for_plain_ascii_and_the_multilingual_encoder_otherwise() -> None:
    assert choose_encoder("auto", parse_prompts("a red sky:1 | fog:0.5")) == "clip"
    assert choose_encoder("auto", parse_prompts("夕焼けの海：1｜霧：0.5")) == "multilingual"
    assert choose_encoder("auto", parse_prompts("a café")) == "multilingual"
    assert choose_encoder("clip", parse_prompts("夕焼け")) == "clip"
    with pytest.raises(SettingsError, match="text encoder must be one of clip, multilingual, auto"):
        choose_encoder("babel", parse_prompts("a cat"))


def test_the_encoder_loads_and_embeds_weighted_parts_in_any_script(
    tiny_multilingual: Path, tmp_path: Path
) -> None:
    encoder = _load(tiny_multilingual, tmp_path)
    assert (encoder.dimension, encoder.max_tokens) == (32, 128)
    assert encoder.token_count("海") == 3  # [CLS], 海, [SEP]
    embeddings = encoder.encode(parse_prompts("夕焼けの海：1｜猫：-0.5"))
    assert embeddings.shape == (2, 32)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(embeddings[0], embeddings[1])
    with pytest.raises(PromptError, match="too long for the multilingual text encoder"):
        encoder.encode(parse_prompts("海" * 200))


def test_encoders_that_do_not_fit_are_refused_saying_why(
    tiny_multilingual: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match="gives 32-dimensional embeddings but this CLIP's"):
        _load(tiny_multilingual, tmp_path, clip_dim=768)
    with pytest.raises(ModelLoadError, match="text space of CLIP ViT-B/32, not ViT-L/14"):
        _load("clip-ViT-B-32-multilingual-v1", tmp_path, clip_name="ViT-L/14")
    with pytest.raises(ModelLoadError, match=r"not in the cache at .* downloads are off"):
        _load("clip-ViT-B-32-multilingual-v1", tmp_path, clip_name="ViT-B/32")
    with pytest.raises(ModelLoadError, match="not a known multilingual encoder"):
        _load(tmp_path / "nowhere", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="is not a sentence-transformers model"):
        _load(tmp_path / "empty", tmp_path)


def test_the_engine_draws_a_japanese_prompt_with_the_multilingual_encoder(
    tiny_models: Models, tiny_multilingual: Path, tmp_path: Path
) -> None:
    settings = DrawSettings(width=64, height=64, cutouts=4)
    encoder = _load(tiny_multilingual, tmp_path)
    engine = Engine(tiny_models, settings, multilingual=encoder)
    job = Job("夕焼けの海：1｜猫：-0.5", seed=3, iterations=3, text_encoder="multilingual")
    result = engine.draw(job)
    assert result.steps == 3
    assert torch.allclose(engine.embed_prompts(job), encoder.encode(job.prompts))
    clip_job = Job(job.prompt, seed=3, iterations=3)
    assert not torch.allclose(engine.embed_prompts(clip_job), engine.embed_prompts(job))
    without = Engine(tiny_models, settings)
    with pytest.raises(SettingsError, match="no multilingual text encoder is loaded"):
        without.draw(job)


def _draw(
    files: ModelFiles, encoder: Path, out: Path, prompt: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "generator", "draw", prompt, "--text-encoder", "auto",
            "--multilingual-model", str(encoder), "--clip-model", str(files.clip_torchscript),
            "--decoder", str(files.decoder_pickle), "--device", "cpu", "--threads", "1",
            "--iterations", "3", "--size", "64", "--cutouts", "4", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_cli_draws_a_japanese_prompt_with_auto(
    model_files: ModelFiles, tiny_multilingual: Path, tmp_path: Path
) -> None:
    japanese = _draw(model_files, tiny_multilingual, tmp_path / "umi.png", "夕焼けの海")
    assert japanese.returncode == 0, japanese.stderr
    assert "multilingual text encoder" in japanese.stdout
    assert (tmp_path / "umi.png").stat().st_size > 0
    english = _draw(model_files, tiny_multilingual, tmp_path / "sea.png", "a sunset sea")
    assert english.returncode == 0, english.stderr
    assert "clip text encoder" in english.stdout


def test_the_bot_draws_a_japanese_prompt_with_the_encoder_auto_chooses(
    model_files: ModelFiles, tiny_multilingual: Path, tmp_path: Path
) -> None:
    models = (
        f'clip = "{model_files.clip_torchscript}"\ndecoder = "{model_files.decoder_pickle}"\n'
        f'device = "cpu"\noffline = true\ntext_encoder = "auto"\n'
        f'multilingual_model = "{tiny_multilingual}"'
    )

    async def scenario() -> None:
        async with running_bot(tmp_path, model_files, models=models) as (fake, running, _):
            for prompt in ("夕焼けの海：1｜霧：-0.5", "a sunset over the sea"):
                await fake.reply_to(
                    await fake.command(ALICE, "draw", prompt=prompt, iterations=3, size=64)
                )
            japanese = await wait_for_job(running.store, 1, lambda job: job.status == "done")
            english = await wait_for_job(running.store, 2, lambda job: job.status == "done")
            assert (japanese.text_encoder, japanese.steps) == ("multilingual", 3)
            assert (english.text_encoder, english.steps) == ("clip", 3)
            card = text_of(await wait_for_card(fake, 1, "Finished"))
            assert "Read by: multilingual encoder" in card
            assert "Read by" not in text_of(await wait_for_card(fake, 2, "Finished"))

    run(scenario())
