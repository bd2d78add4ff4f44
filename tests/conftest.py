"""Tiny random models written to disk in the formats users have, and a local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from generator.contract.settings import DrawSettings
from generator.contract.weights import CLIP_WEIGHTS
from generator.method.runtime import configure_torch
from generator.models.loaders import Models, load_models

from .cli_harness import Cli
from .redis_harness import RedisServer
from .synthetic import (
    ClipSize,
    write_clip,
    write_decoder,
    write_encoder,
    write_m_clip,
    write_multilingual,
)

# One torch thread in the test process, as in the workers the tests start: the test machines
# have two cores, and torch's threads stall each other when another process takes a core.
# Configured like every process that draws (compile falls back to eager where it cannot).
configure_torch(1)


@dataclass(frozen=True)
class ModelFiles:
    clip_state_dict: Path
    clip_torchscript: Path
    clip_48_torchscript: Path  # another tiny CLIP: 48x48 crops, 24-wide embeddings
    decoder_pickle: Path
    decoder_state_dict: Path
    decoder_safetensors: Path
    encoder_pickle: Path


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    folder = tmp_path_factory.mktemp("models")
    return ModelFiles(
        clip_state_dict=write_clip(folder / "clip-state-dict.pt", fmt="state_dict"),
        clip_torchscript=write_clip(folder / "clip-torchscript.pt", fmt="torchscript"),
        clip_48_torchscript=write_clip(folder / "clip-48.pt", "tiny-48", fmt="torchscript", seed=1),
        decoder_pickle=write_decoder(folder / "decoder.pkl", fmt="pickle"),
        decoder_state_dict=write_decoder(folder / "decoder-state-dict.pt", fmt="state_dict"),
        decoder_safetensors=write_decoder(folder / "decoder.safetensors", fmt="safetensors"),
        encoder_pickle=write_encoder(folder / "encoder.pkl"),
    )


@pytest.fixture(scope="session")
def tiny_multilingual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random multilingual encoder into the tiny CLIP's 32-wide space, as saved by
    sentence-transformers."""
    return write_multilingual(tmp_path_factory.mktemp("multilingual"), dimension=32)


@pytest.fixture(scope="session")
def named_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights cache holding tiny CLIPs under the files of the presets' models (ViT-B/32,
    ViT-B/16 with 48x48 crops, RN50), so that they load by name, offline."""
    cache = tmp_path_factory.mktemp("named-clips")
    stand_ins: tuple[tuple[str, ClipSize], ...] = (
        ("ViT-B/32", "tiny"),
        ("ViT-B/16", "tiny-48"),
        ("RN50", "tiny"),
    )
    for seed, (name, size) in enumerate(stand_ins):
        path = cache / CLIP_WEIGHTS[name].filename
        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip(path, size, fmt="state_dict", seed=seed)
    return cache


@pytest.fixture(scope="session")
def tiny_m_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random M-CLIP (XLM-RoBERTa) encoder into the tiny CLIP's space, in M-CLIP's layout."""
    return write_m_clip(tmp_path_factory.mktemp("m-clip") / "encoder", dimension=32)


@pytest.fixture(scope="session")
def tiny_models(model_files: ModelFiles) -> Models:
    return load_models(
        str(model_files.clip_torchscript), str(model_files.decoder_pickle), device="cpu"
    )


@pytest.fixture(scope="session")
def two_clip_models(model_files: ModelFiles) -> Models:
    """The tiny CLIP (32x32 crops) and the tiny-48 one (48x48) judging together."""
    clips = [str(model_files.clip_torchscript), str(model_files.clip_48_torchscript)]
    return load_models(clips, str(model_files.decoder_pickle), device="cpu")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def small_settings() -> DrawSettings:
    return DrawSettings(width=64, height=64, cutouts=8)


@dataclass
class FileServer:
    """Serves `files` (URL path -> bytes) on loopback; anything else is a 404."""

    base_url: str
    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    served = FileServer(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.hits[self.path] = served.hits.get(self.path, 0) + 1
            body = served.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll, so that shutting the server down does not wait half a second.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line, run in this process (`tests.cli_harness`)."""
    return Cli(capsys)
