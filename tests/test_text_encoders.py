"""Prompts in other languages: tiny multilingual encoders saved as sentence-transformers and
M-CLIP save theirs, loaded through the real loaders and the weights manager, the engine drawing
with them, the CLI's auto choice, and the bot checking prompt lengths in the member's language."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generator.contract.encoders import (
    M_CLIP,
    MULTILINGUAL_MODELS,
    MultilingualSpec,
    choose_encoder,
    prompt_limit,
)
from generator.contract.errors import (
    ModelLoadError,
    PromptError,
    SettingsError,
    UnsafeModelFileError,
)
from generator.contract.prompts import parse_prompts
from generator.contract.settings import DrawSettings, Job
from generator.contract.weights import HubFile
from generator.method.engine import Engine
from generator.models.loaders import Models
from generator.models.text_encoders import MClipEncoder, MultilingualEncoder, load_multilingual

from .bot_harness import run, running_bot, text_of, wait_for_card, wait_for_job
from .cli_harness import Cli, Run
from .conftest import FileServer, ModelFiles
from .fake_discord import ALICE, YUKI
from .fake_workers import FakeWorkers

CPU = torch.device("cpu")


def _load(path: Path | str, tmp_path: Path, **changes: object) -> MultilingualEncoder:
    arguments: dict[str, object] = {
        "clip_dim": 32,
        "clip_name": None,
        "device": CPU,
        "cache_dir": tmp_path,
        "offline": True,
    }
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
    fits = "not ViT-L/14: use CLIP ViT-B/32 with it, the multilingual encoder XLM-Roberta-Large-Vit"
    with pytest.raises(ModelLoadError, match=fits):
        _load("clip-ViT-B-32-multilingual-v1", tmp_path, clip_name="ViT-L/14")
    offline = r"v1 \(modules.json\) is not available \(offline mode"
    with pytest.raises(ModelLoadError, match=offline):
        _load("clip-ViT-B-32-multilingual-v1", tmp_path, clip_name="ViT-B/32")
    with pytest.raises(ModelLoadError, match="text space of CLIP ViT-L/14, not ViT-B/32"):
        _load("XLM-Roberta-Large-Vit-L-14", tmp_path, clip_name="ViT-B/32")
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
    (multilingual,) = engine.embed_prompts(job)
    assert torch.allclose(multilingual, encoder.encode(job.prompts))
    (clip,) = engine.embed_prompts(Job(job.prompt, seed=3, iterations=3))
    assert not torch.allclose(clip, multilingual)
    without = Engine(tiny_models, settings)
    with pytest.raises(SettingsError, match="no multilingual text encoder is loaded"):
        without.draw(job)


def _draw(cli: Cli, files: ModelFiles, encoder: Path, out: Path, prompt: str) -> Run:
    return cli(
        *("draw", prompt, "--text-encoder", "auto", "--multilingual-model", str(encoder)),
        *("--clip-model", str(files.clip_torchscript), "--decoder", str(files.decoder_pickle)),
        *("--device", "cpu", "--threads", "1", "--iterations", "3", "--size", "64"),
        *("--cutouts", "4", "--out", str(out)),
    )


def test_the_cli_draws_a_japanese_prompt_with_auto(
    cli: Cli, model_files: ModelFiles, tiny_multilingual: Path, tmp_path: Path
) -> None:
    japanese = _draw(cli, model_files, tiny_multilingual, tmp_path / "umi.png", "夕焼けの海")
    assert japanese.code == 0, japanese.stderr
    assert "multilingual text encoder" in japanese.stdout
    assert (tmp_path / "umi.png").stat().st_size > 0
    english = _draw(cli, model_files, tiny_multilingual, tmp_path / "sea.png", "a sunset sea")
    assert english.code == 0, english.stderr
    assert "clip text encoder" in english.stdout


def _auto_models(files: ModelFiles, encoder: Path) -> str:
    """The bot's [models] section: the tiny models, `encoder` for prompts auto sends to it."""
    return (
        f'clip = "{files.clip_torchscript}"\ndecoder = "{files.decoder_pickle}"\n'
        f'device = "cpu"\noffline = true\ntext_encoder = "auto"\nmultilingual_model = "{encoder}"'
    )


@pytest.mark.e2e
def test_the_bot_draws_a_japanese_prompt_with_the_encoder_auto_chooses(
    model_files: ModelFiles, tiny_multilingual: Path, tmp_path: Path
) -> None:
    models = _auto_models(model_files, tiny_multilingual)

    async def scenario() -> None:
        async with running_bot(tmp_path, model_files, models=models) as (fake, running, _):
            for prompt in ("夕焼けの海：1｜霧：-0.5", "a sunset over the sea"):
                await fake.reply_to(
                    await fake.command(ALICE, "draw", prompt=prompt, iterations=3, size=64)
                )
            japanese = await wait_for_job(running.store, 1, lambda job: job.status == "done")
            english = await wait_for_job(running.store, 2, lambda job: job.status == "done")
            assert (japanese.spec.text_encoder, japanese.steps) == ("multilingual", 3)
            assert (english.spec.text_encoder, english.steps) == ("clip", 3)
            card = text_of(await wait_for_card(fake, 1, "Finished"))
            assert "Read by: multilingual encoder" in card
            assert "Read by" not in text_of(await wait_for_card(fake, 2, "Finished"))

    run(scenario())


def _m_clip_reference(folder: Path, text: str) -> torch.Tensor:
    """What M-CLIP's own code computes: the transformer's token states, their mean over the
    attention mask, the linear map; built here from the files by hand."""
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    transformer = XLMRobertaModel(XLMRobertaConfig.from_json_file(folder / "base/config.json"))
    transformer.load_state_dict(
        {k.removeprefix("transformer."): v for k, v in state.items() if k[0] == "t"}
    )
    head = torch.nn.Linear(32, 32)
    head.load_state_dict({k.split(".")[-1]: v for k, v in state.items() if k[0] == "L"})
    tokens = AutoTokenizer.from_pretrained(str(folder))([text], return_tensors="pt")
    with torch.no_grad():
        states = transformer.eval()(**tokens)[0]
        mask = tokens["attention_mask"].unsqueeze(2)
        pooled = head((states * mask).sum(dim=1) / mask.sum(dim=1))
    return torch.nn.functional.normalize(pooled, dim=-1)


def test_an_m_clip_encoder_loads_and_embeds_as_m_clip_does(
    tiny_m_clip: Path, tmp_path: Path
) -> None:
    encoder = _load(tiny_m_clip, tmp_path)
    assert isinstance(encoder, MClipEncoder)
    assert (encoder.dimension, encoder.max_tokens) == (32, 64)
    assert encoder.token_count("海") == 4  # <s>, ▁, 海, </s>
    embeddings = encoder.encode(parse_prompts("夕焼けの海：1｜猫：-0.5"))
    assert torch.allclose(embeddings[0], _m_clip_reference(tiny_m_clip, "夕焼けの海")[0], atol=1e-5)
    assert torch.allclose(embeddings[1], _m_clip_reference(tiny_m_clip, "猫")[0], atol=1e-5)
    with pytest.raises(PromptError, match="which reads at most 64 tokens") as refused:
        encoder.encode(parse_prompts("海" * 80))
    assert refused.value.values == {"part": "海" * 39 + "…", "most": 64}


def test_broken_or_unsafe_m_clip_files_are_refused_saying_why(
    tiny_m_clip: Path, tmp_path: Path
) -> None:
    headless = shutil.copytree(tiny_m_clip, tmp_path / "headless")
    state = torch.load(headless / "pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in state.items() if k[0] == "t"}, headless / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"does not fit the M-CLIP model it names: missing"):
        _load(headless, tmp_path)
    baseless = shutil.copytree(tiny_m_clip, tmp_path / "baseless")
    shutil.rmtree(baseless / "base")
    with pytest.raises(ModelLoadError, match=r"base model's config in base/config.json"):
        _load(baseless, tmp_path)
    unsafe = shutil.copytree(tiny_m_clip, tmp_path / "unsafe")
    marker = tmp_path / "ran"
    torch.save({**state, "payload": _RunsCode(marker)}, unsafe / "pytorch_model.bin")
    with pytest.raises(UnsafeModelFileError, match=r"refusing to load .*posix\.system"):
        _load(unsafe, tmp_path)
    assert not marker.exists()


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _serve(server: FileServer, folder: Path, repo: str, revision: str) -> tuple[HubFile, ...]:
    """Put every file of `folder` on the fake Hub; the files pinned by their SHA-256."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        server.files[f"/{repo}/resolve/{revision}/{name}"] = path.read_bytes()
        files.append(HubFile(repo, revision, name, hashlib.sha256(path.read_bytes()).hexdigest()))
    return tuple(files)


def test_known_encoders_come_through_the_weights_manager_from_the_hub_mirror(
    tiny_m_clip: Path, file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _serve(file_server, tiny_m_clip, "test/tiny-m-clip", "0123abc")
    spec = MultilingualSpec(M_CLIP, "ViT-B/32", "a few kB", files)
    monkeypatch.setitem(MULTILINGUAL_MODELS, "tiny-m-clip", spec)
    monkeypatch.setenv("HF_ENDPOINT", file_server.base_url)
    cache = tmp_path / "cache"

    limit = prompt_limit("tiny-m-clip", cache, offline=False)  # what the bot fetches
    assert limit.most == 64
    assert sorted(file_server.hits) == [
        "/test/tiny-m-clip/resolve/0123abc/tokenizer.json",
        "/test/tiny-m-clip/resolve/0123abc/tokenizer_config.json",
    ]
    encoder = _load("tiny-m-clip", tmp_path, cache_dir=cache, offline=False, clip_name="ViT-B/32")
    assert set(file_server.hits.values()) == {1}
    assert len(file_server.hits) == len(files) == 5
    assert (cache / "text/tiny-m-clip/base/config.json").is_file()
    local = _load(tiny_m_clip, tmp_path)
    prompts = parse_prompts("夕焼けの海")
    assert torch.equal(encoder.encode(prompts), local.encode(prompts))
    _load("tiny-m-clip", tmp_path, cache_dir=cache, offline=True, clip_name="ViT-B/32")
    assert set(file_server.hits.values()) == {1}


@pytest.mark.slow
def test_fetch_weights_checks_the_pinned_encoder_against_its_sha256(
    model_files: ModelFiles, file_server: FileServer, tmp_path: Path
) -> None:
    spec = MULTILINGUAL_MODELS["clip-ViT-B-32-multilingual-v1"]
    for file in spec.files:
        file_server.files[f"/{file.repo}/resolve/{file.revision}/{file.path}"] = b"{}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "generator",
            "fetch-weights",
            "--text-encoder",
            "auto",
            "--clip-model",
            str(model_files.clip_torchscript),
            "--decoder",
            str(model_files.decoder_pickle),
            "--cache-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HF_ENDPOINT": file_server.base_url},
    )
    assert result.returncode == 1
    pinned = (
        "/sentence-transformers/clip-ViT-B-32-multilingual-v1/resolve/"
        "58edf8cada9e398793dca955574a48cbb7f18be2/tokenizer.json"
    )
    assert f"{file_server.base_url}{pinned}: SHA-256 mismatch" in result.stderr
    assert "expected 5b4e1a8171c81dfd666ae40265b9530c6e0b3d53923fe8ac493dcc84229adf81" in (
        result.stderr
    )
    folder = tmp_path / "text/clip-ViT-B-32-multilingual-v1"
    assert (folder / "model.safetensors").read_bytes() == b"{}"  # not pinned: kept
    assert not (folder / "tokenizer.json").exists()


@pytest.mark.e2e
def test_the_bot_refuses_a_prompt_too_long_for_the_encoder_in_the_members_language(
    model_files: ModelFiles, tiny_m_clip: Path, tmp_path: Path
) -> None:
    models = _auto_models(model_files, tiny_m_clip)

    async def scenario() -> None:
        workers = FakeWorkers()
        async with running_bot(
            tmp_path, model_files, guild_locale="ja", transport=workers, models=models
        ) as (fake, running, config):
            workers.join(clip_models=(config.models.clip,))
            long = "海" * 80
            refused = await fake.reply_to(await fake.command(YUKI, "draw", prompt=long))
            assert refused == (
                f"プロンプト「{'海' * 39}…」は多言語テキストエンコーダーには長すぎます。"
                "読めるのは 64 トークンまでです。短くしてください。"
            )
            english = await fake.reply_to(await fake.command(ALICE, "draw", prompt=long))
            assert "is too long for the multilingual text encoder, which reads at most 64" in (
                english
            )
            assert running.store.active_count() == 0
            await fake.reply_to(
                await fake.command(YUKI, "draw", prompt="夕焼けの海", iterations=3, size=64)
            )
            sent = (await workers.next_job(1)).spec
            assert (sent.text_encoder, sent.iterations, sent.prompt) == (
                "multilingual",
                3,
                "夕焼けの海",
            )

    run(scenario())
