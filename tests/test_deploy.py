"""What can be checked of the Docker setup without a Docker engine, and `pseudo-dalle doctor`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot.config import load_config
from bot.jobs.spec import Ask, Rules, build
from bot.jobs.store import Store
from bot.limits import GuildSettings
from pseudo_dalle.cli import main

from .conftest import ModelFiles

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, check=False, env=environment, cwd=ROOT
    )


def test_dockerfile_passes_hadolint() -> None:
    result = _run(str(BIN / "hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests/data/compose_spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)
    bot, cpu = compose["services"]["bot"], compose["services"]["bot-cpu"]
    devices = bot["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    for service in (bot, cpu):
        assert service["env_file"] == ".env"
        assert service["restart"] == "unless-stopped"
        assert "data:/data" in service["volumes"]
    assert cpu["profiles"] == ["cpu"]
    assert "deploy" not in cpu
    many, redis, worker = (compose["services"][name] for name in ("bot-many", "redis", "worker"))
    for service in (many, redis, worker):
        assert service["profiles"] == ["many-gpus"]
    assert many["environment"]["REDIS_URL"] == worker["environment"]["REDIS_URL"]
    assert many["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert redis["command"] == ["redis-server", "--appendonly", "yes", "--appendfsync", "always"]
    assert "redis:/data" in redis["volumes"]
    assert worker["command"][:2] == ["pseudo-dalle", "worker"]
    gpus = worker["deploy"]["resources"]["reservations"]["devices"]
    assert gpus == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "deploy" not in many
    broken = {**compose, "services": {"bot": {**bot, "restart_policy": "sometimes"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(schema).validate(broken)


@pytest.mark.slow
def test_image_commands_exist_in_the_installed_package() -> None:
    entrypoint = str(ROOT / "docker/entrypoint.sh")
    for command in ("bot", "healthcheck", "doctor", "worker"):
        result = _run("sh", entrypoint, "pseudo-dalle", command, "--help")
        assert result.returncode == 0, result.stderr
    default = _run(
        "sh",
        entrypoint,
        env={
            "PSEUDO_DALLE_CONFIG": str(ROOT / "docker/config.toml"),
            "DISCORD_TOKEN": "",
        },
    )
    assert default.returncode == 2
    assert "no bot token: set DISCORD_TOKEN" in default.stderr


def test_image_config_keeps_everything_under_data() -> None:
    config = load_config(ROOT / "docker/config.toml", environ={"DISCORD_TOKEN": "x"})
    assert config.models.cache_dir == "/data/weights"
    assert config.resolve(config.storage.database) == Path("/data/pseudo-dalle.sqlite3")
    assert config.resolve(config.health.heartbeat_file) == Path("/data/heartbeat.json")
    assert "DISCORD_TOKEN=" in (ROOT / ".env.example").read_text()


def test_doctor_reports_without_showing_the_token(
    model_files: ModelFiles,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "weights"
    (cache / "clip").mkdir(parents=True)
    (cache / "clip/ViT-B-32.pt").write_bytes(b"not the real weights")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[models]\nclip = "ViT-B/32"\ndecoder = "{model_files.decoder_pickle}"\n'
        f'cache_dir = "{cache}"\n[storage]\ndatabase = "jobs.sqlite3"\n[worker]\nthreads = 3\n'
    )
    store = Store(
        tmp_path / "jobs.sqlite3", load_config(config, environ={"DISCORD_TOKEN": "x"}).defaults
    )
    spec, _ = build(Ask(prompt="a", iterations=1, size=64), GuildSettings(), Rules(), "en")
    store.add_job(guild_id=1, channel_id=2, user_id=3, spec=spec)
    store.close()
    monkeypatch.setenv("DISCORD_TOKEN", "very-secret-token")
    assert main(["doctor", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "very-secret-token" not in out + err
    assert "token: set (from DISCORD_TOKEN)" in out
    assert re.search(r"^torch \d", out, re.MULTILINE)
    assert "device: CPU only" in out or "device cuda:0" in out
    assert "CLIP ViT-B/32: " in out
    assert "SHA-256 MISMATCH" in out
    assert f"dVAE decoder (local file): {model_files.decoder_pickle}" in out
    assert "no published SHA-256" in out
    assert "dVAE encoder (pictures in): missing at " in out
    assert (
        "(downloaded by the first job that starts from a picture, zooms out or upscales "
        "creatively from https://cdn" in out
    )
    assert f"database: {tmp_path / 'jobs.sqlite3'}" in out
    assert "1 queued" in out
    assert "moderation: prompts are checked against 0 blocked term(s) of the operator" in out
    assert "worker threads: 3 (set in the config" in out
    monkeypatch.setenv("DISCORD_TOKEN", "")
    assert main(["doctor"]) == 0
    unset = capsys.readouterr().out
    assert "token: NOT SET" in unset
    cores = len(os.sched_getaffinity(0))
    auto = f"worker threads: {max(1, cores - 1)} (auto: {cores} cores available, 1 left to the bot)"
    assert auto in unset
