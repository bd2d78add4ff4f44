"""Weights download from ordered sources into the cache, verified and atomically;
offline fails clearly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from generator.contract.errors import WeightsUnavailableError
from generator.contract.weights import (
    CLIP_WEIGHTS,
    Source,
    WeightSpec,
    decoder_spec,
    default_cache_dir,
    ensure_weights,
)
from generator.models.loaders import decoder_path, load_models

from .conftest import FileServer, ModelFiles

PAYLOAD = b"model bytes " * 1000
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def _spec(server: FileServer, *sources: tuple[str, str | None]) -> WeightSpec:
    return WeightSpec(
        "test model", "test/model.pt", tuple(Source(server.url(p), d) for p, d in sources)
    )


def _leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()]


def test_download_verifies_and_caches(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/model.pt"] = PAYLOAD
    spec = _spec(file_server, ("/model.pt", DIGEST))
    path = ensure_weights(spec, tmp_path, progress=False)
    assert path == tmp_path / "test/model.pt"
    assert path.read_bytes() == PAYLOAD
    assert ensure_weights(spec, tmp_path, progress=False) == path
    assert file_server.hits["/model.pt"] == 1
    assert _leftovers(tmp_path) == [path]


def test_falls_back_to_the_next_source(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/mirror.pt"] = PAYLOAD
    spec = _spec(file_server, ("/openai.pt", DIGEST), ("/mirror.pt", DIGEST))
    path = ensure_weights(spec, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert file_server.hits == {"/openai.pt": 1, "/mirror.pt": 1}


def test_sha256_mismatch_is_refused_and_nothing_is_kept(
    file_server: FileServer, tmp_path: Path
) -> None:
    file_server.files["/model.pt"] = PAYLOAD + b"tampered"
    spec = _spec(file_server, ("/model.pt", DIGEST))
    with pytest.raises(WeightsUnavailableError, match="SHA-256 mismatch") as caught:
        ensure_weights(spec, tmp_path, progress=False)
    assert str(tmp_path / "test/model.pt") in str(caught.value)
    assert _leftovers(tmp_path) == []


def test_every_source_failing_names_the_file_and_where_to_put_it(
    file_server: FileServer, tmp_path: Path
) -> None:
    spec = _spec(file_server, ("/gone.pt", None))
    with pytest.raises(WeightsUnavailableError) as caught:
        ensure_weights(spec, tmp_path, progress=False)
    message = str(caught.value)
    assert "HTTP 404" in message
    assert file_server.url("/gone.pt") in message
    assert f"save it as {tmp_path / 'test/model.pt'}" in message


def test_offline_never_downloads(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/model.pt"] = PAYLOAD
    spec = _spec(file_server, ("/model.pt", DIGEST))
    with pytest.raises(WeightsUnavailableError, match="offline mode"):
        ensure_weights(spec, tmp_path, offline=True, progress=False)
    assert file_server.hits == {}


def test_offline_clip_error_names_the_openai_file(model_files: ModelFiles, tmp_path: Path) -> None:
    decoder = str(model_files.decoder_pickle)
    with pytest.raises(WeightsUnavailableError) as caught:
        load_models("ViT-B/32", decoder, device="cpu", cache_dir=tmp_path, offline=True)
    message = str(caught.value)
    assert "CLIP ViT-B/32" in message
    assert str(tmp_path / "clip/ViT-B-32.pt") in message
    assert "openaipublic.azureedge.net" in message
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in message


def test_decoder_downloaded_from_a_url_loads(
    file_server: FileServer, model_files: ModelFiles, tmp_path: Path
) -> None:
    file_server.files["/dall-e/decoder.pkl"] = model_files.decoder_pickle.read_bytes()
    url = file_server.url("/dall-e/decoder.pkl")
    models = load_models(
        str(model_files.clip_state_dict), url, device="cpu", cache_dir=tmp_path, progress=False
    )
    assert models.vocab_size == 512
    assert decoder_path(url, tmp_path, offline=True).is_file()


def test_known_sources() -> None:
    vit = CLIP_WEIGHTS["ViT-B/32"]
    assert [s.url.split("/")[2] for s in vit.sources] == [
        "openaipublic.azureedge.net",
        "huggingface.co",
    ]
    assert all(s.sha256 for s in vit.sources)
    assert decoder_spec().filename == "dall_e/decoder.pkl"
    assert decoder_spec("https://example.org/d.pkl").filename.endswith("-d.pkl")


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSEUDO_DALLE_CACHE", "/srv/weights")
    assert default_cache_dir() == Path("/srv/weights")
    monkeypatch.delenv("PSEUDO_DALLE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache")
    assert default_cache_dir() == Path("/var/cache/pseudo-dalle")


def test_progress_is_logged_in_plain_lines_when_not_on_a_terminal(
    file_server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file_server.files["/model.pt"] = PAYLOAD
    ensure_weights(_spec(file_server, ("/model.pt", DIGEST)), tmp_path, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"downloading test model from {file_server.url('/model.pt')}"
    assert lines[-1].startswith("test/model.pt: 100% (")
    assert "\r" not in "".join(lines)


def test_a_mirror_replaces_the_origins_and_keeps_their_checksum(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_server.files["/origin.pt"] = PAYLOAD
    spec = _spec(file_server, ("/origin.pt", DIGEST))
    monkeypatch.setenv("PSEUDO_DALLE_MIRROR", file_server.url("/copy/"))
    file_server.files["/copy/test/model.pt"] = PAYLOAD + b"tampered"
    with pytest.raises(WeightsUnavailableError, match="SHA-256 mismatch"):
        ensure_weights(spec, tmp_path / "first", progress=False)
    file_server.files["/copy/test/model.pt"] = PAYLOAD
    path = ensure_weights(spec, tmp_path / "second", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert file_server.hits == {"/copy/test/model.pt": 2}
