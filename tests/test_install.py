"""What ships is what is tested: the wheel installed non-editably and run from outside the
checkout, and the same install built from only the files the Docker image copies."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser
from PIL import Image

from .bot_harness import TOKEN, UNSCREENED, BotProcess, start_bot_process
from .conftest import ModelFiles
from .fake_discord import ALICE, CHANNEL_ID, YUKI, Event, FakeDiscord, message_text
from .installed import (
    ROOT,
    Installed,
    archive_names,
    build_and_install,
    copy_checkout,
    data_files,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

WORKER_READY = r"worker \S+ \(pid (\d+)\) ready on"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("install")
    return build_and_install(copy_checkout(work / "checkout"), work)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working directory outside the checkout."""
    assert not tmp_path.is_relative_to(ROOT)
    return tmp_path


def _run(
    installed: Installed, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed.bin / "pseudo-dalle"), *args],
        cwd=cwd,
        env=installed.env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _assert_ran_from(installed: Installed, pids: set[int]) -> None:
    """Every `bot` and `generator` file the processes `pids` read came from the installed
    package, none from the checkout."""
    read = installed.files_read()
    assert pids <= set(read), f"no package file read by {pids - set(read)}"
    site = installed.venv.resolve()
    for pid in pids:
        outside_venv = [p for p in read[pid] if not p.resolve().is_relative_to(site)]
        assert outside_venv == [], f"process {pid} read {outside_venv[:3]}"
    everything = [p for paths in read.values() for p in paths]
    assert not [p for p in everything if p.resolve().is_relative_to(ROOT)]


def test_the_wheel_and_the_sdist_carry_every_file_the_code_reads(installed: Installed) -> None:
    needed = data_files(ROOT)
    assert "bot/locales/ja/LC_MESSAGES/pseudo_dalle.po" in needed
    assert {"generator/models/q16/ViT-B-32.npy", "generator/models/q16/NOTICE"} <= needed
    wheel = archive_names(installed.wheel)
    assert needed <= wheel
    assert needed <= archive_names(installed.sdist)
    # The console command's package ships; the tests' random models stay in the checkout.
    assert "pseudo_dalle/cli.py" in wheel
    assert not [name for name in wheel if "synthetic" in name or name.startswith("tests/")]


def test_installed_commands_run_outside_the_checkout(
    installed: Installed, model_files: ModelFiles, outside: Path
) -> None:
    assert _run(installed, outside, "--help").returncode == 0
    config = outside / "config.toml"
    config.write_text(
        f'[models]\nclip = "{model_files.clip_torchscript}"\n'
        f'decoder = "{model_files.decoder_pickle}"\ncache_dir = "{outside / "weights"}"\n'
    )
    doctor = _run(installed, outside, "doctor", "--config", str(config))
    assert doctor.returncode == 0, doctor.stderr
    assert re.search(
        rf"^pseudo-dalle [\d.]+ \({re.escape(str(installed.venv))}/", doctor.stdout, re.MULTILINE
    ), doctor.stdout
    assert re.search(
        r"^Pillow image formats: WebP (yes|NO).*, AVIF (yes|NO)", doctor.stdout, re.MULTILINE
    ), doctor.stdout
    out, start = outside / "music.png", outside / "start.webp"
    Image.effect_mandelbrot((90, 60), (-2.0, -1.2, 1.0, 1.2), 30).convert("RGB").save(start)
    draw = _run(
        installed,
        outside,
        "draw",
        "an image of the music",
        "--size",
        "64",
        "--cutouts",
        "4",
        "--iterations",
        "2",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--out",
        str(out),
        "--clip-model",
        str(model_files.clip_torchscript),
        "--decoder",
        str(model_files.decoder_pickle),
        "--init-image",
        str(start),
        "--image-prompt",
        f"{start}:0.5",
        "--encoder",
        str(model_files.encoder_pickle),
    )
    assert draw.returncode == 0, draw.stderr
    assert Image.open(out).size == (64, 64)
    assert "done: 2/2 iterations" in draw.stdout
    assert '"name": "start.webp"' in Image.open(out).info["init_image"]
    # Each command ran in its own process; all of them read the installed package.
    _assert_ran_from(installed, set(installed.files_read()))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_first_run_without_the_weights_says_what_to_do(
    installed: Installed, outside: Path
) -> None:
    mirror = f"http://127.0.0.1:{_closed_port()}/weights"
    cache = outside / "cache"
    began = time.monotonic()
    draw = _run(
        installed,
        outside,
        "draw",
        "an image of the music",
        "--device",
        "cpu",
        PSEUDO_DALLE_CACHE=str(cache),
        PSEUDO_DALLE_MIRROR=mirror,
    )
    took = time.monotonic() - began
    assert took < 60
    assert draw.returncode not in (0, None)
    *progress, message = draw.stderr.strip().splitlines()
    assert all(line.startswith("downloading ") for line in progress), draw.stderr
    assert message.startswith("pseudo-dalle: error: "), draw.stderr
    assert "CLIP ViT-B/32 is not available" in message
    assert f"{mirror}/clip/ViT-B-32.pt: unreachable" in message
    assert "Run `pseudo-dalle fetch-weights` where there is a network" in message
    assert "set PSEUDO_DALLE_MIRROR to a reachable copy of the cache" in message
    assert f"save it as {cache / 'clip/ViT-B-32.pt'}" in message
    assert not (cache / "clip/ViT-B-32.pt").exists()


def _japanese_cards(fake: FakeDiscord, job_id: int) -> list[Event]:
    return [
        e
        for e in fake.events
        if e.kind in ("create", "edit")
        and e.channel_id == CHANNEL_ID
        and f"完成 · ジョブ {job_id}" in message_text(e)
    ]


async def _two_languages(fake: FakeDiscord, bot: BotProcess) -> None:
    """A member in Japanese and one in English draw; each is answered in their language, and
    the cards, in the server's Japanese, end with the picture."""
    await asyncio.wait_for(fake.identified.wait(), 60)
    await fake.wait_for(lambda: fake.commands)
    draw = next(c for c in fake.commands if c["name"] == "draw")
    assert draw["name_localizations"]["ja"] == "描く"
    queued = await fake.reply_to(
        await fake.command(YUKI, "draw", prompt="夕焼けの海", iterations=3, size=64)
    )
    assert queued == "ジョブ 1 として順番待ちに入りました。カードはこのチャンネルにあります。"
    english = await fake.reply_to(
        await fake.command(ALICE, "draw", prompt="a sunset", iterations=3, size=64)
    )
    assert english == "Queued as job 2; its card is in this channel."
    for job_id in (1, 2):
        final = (await fake.wait_for(lambda j=job_id: _japanese_cards(fake, j), 120))[-1]
        assert "3 回の反復" in message_text(final)
        (picture,) = final.files.values()
        assert picture.startswith(b"\x89PNG")
    assert TOKEN not in "".join(bot.log)


def _bot_settings(fake: FakeDiscord, files: ModelFiles) -> str:
    """The config sections that point the bot at the fake Discord and the tiny models."""
    return (
        f'[discord]\ntoken = "{TOKEN}"\napi_base = "{fake.api_base}"\n'
        f'gateway_url = "{fake.gateway_url}"\n\n'
        f'[models]\nclip = "{files.clip_torchscript}"\ndecoder = "{files.decoder_pickle}"\n'
        'device = "cpu"\noffline = true\n\n'
        "[worker]\ncutouts = 4\nthreads = 1\n\n[defaults]\nprogress_interval_s = 2\n\n"
        # The tiny random CLIP's scores mean nothing (bot_harness.UNSCREENED says why).
        f"[moderation]\n{UNSCREENED}\n\n"
    )


async def _serve(bot: BotProcess, fake: FakeDiscord, installed: Installed) -> None:
    try:
        await _two_languages(fake, bot)
        worker = int((await bot.wait_for_log(WORKER_READY)).group(1))
        _assert_ran_from(installed, {bot.process.pid, worker})
    finally:
        await bot.kill()
        await fake.stop()


def test_the_installed_bot_answers_members_in_their_language(
    installed: Installed, model_files: ModelFiles, outside: Path
) -> None:
    async def scenario() -> None:
        fake = FakeDiscord(guild_locale="ja")
        await fake.start()
        config = outside / "config.toml"
        config.write_text(
            f'{_bot_settings(fake, model_files)}[storage]\ndatabase = "{outside / "bot.sqlite3"}"\n'
        )
        bot = await start_bot_process(
            config,
            (str(installed.bin / "pseudo-dalle"), "bot"),
            cwd=outside,
            env=installed.env(),
        )
        await _serve(bot, fake, installed)

    asyncio.run(scenario())


# -- The Docker image, without a Docker engine ---------------------------------------------


@dataclass(frozen=True)
class ImageFiles:
    """The files a Docker build of the checkout would put in the image, under `root`."""

    root: Path
    dockerfile: DockerfileParser

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def instructions(self, name: str) -> list[str]:
        return [i["value"] for i in self.dockerfile.structure if i["instruction"] == name]


def _context_files() -> set[str]:
    """The checkout's paths a Docker build may copy: what .dockerignore leaves in the context."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return set(exclude_paths(str(ROOT), patterns))


def _copy(context: set[str], sources: list[str], destination: Path, into_folder: bool) -> None:
    for source in sources:
        assert source in context, f"COPY {source}: not in the build context (.dockerignore)"
        origin = ROOT / source
        target = destination / origin.name if into_folder and origin.is_file() else destination
        if origin.is_dir():
            for name in sorted(context):
                if name.startswith(f"{source.rstrip('/')}/") and (ROOT / name).is_file():
                    relative = Path(name).relative_to(source)
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / name, target / relative)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def build_image_files(root: Path) -> ImageFiles:
    """Follow the Dockerfile's WORKDIR and COPY lines (flags such as --chmod aside)."""
    dockerfile = DockerfileParser(path=str(ROOT / "Dockerfile"))
    context = _context_files()
    workdir = Path("/")
    for instruction in dockerfile.structure:
        name, value = instruction["instruction"], instruction["value"]
        if name == "WORKDIR":
            workdir = workdir / value
        elif name == "COPY":
            words = [w for w in shlex.split(value) if not w.startswith("--")]
            *sources, destination = words
            inside = workdir / destination
            into_folder = destination.endswith("/") or len(sources) > 1
            _copy(context, sources, root / inside.relative_to("/"), into_folder)
    return ImageFiles(root, dockerfile)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageFiles:
    return build_image_files(tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="module")
def image_install(image: ImageFiles, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The project installed from the image's working directory, as its RUN line does."""
    (workdir,) = image.instructions("WORKDIR")
    return build_and_install(image.path(workdir), tmp_path_factory.mktemp("image-install"))


def _pip_install_words(image: ImageFiles) -> list[str]:
    (command,) = [run for run in image.instructions("RUN") if "pip install" in run]
    words = shlex.split(command)
    start = words.index("install") + 1
    end = words.index("&&", start) if "&&" in words[start:] else len(words)
    return words[start:end]


def test_the_image_installs_the_torch_the_tests_run(image: ImageFiles, tmp_path: Path) -> None:
    """The image's base brings no other torch, and its pip install resolves, from the image's
    files alone, to the versions constraints.txt pins (no machine-wide pip settings)."""
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert torch.__version__.split("+")[0] == pins["torch"]
    base = image.dockerfile.baseimage
    assert not base.startswith("pytorch/pytorch:") or base.split(":")[1].startswith(pins["torch"])
    (workdir,) = image.instructions("WORKDIR")
    report = tmp_path / "report.json"
    words = [w for w in _pip_install_words(image) if w != "--no-cache-dir"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            *words,
        ],
        cwd=image.path(workdir),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )
    assert result.returncode == 0, result.stderr
    chosen = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert chosen["torch"] == pins["torch"]
    assert chosen["torchvision"] == pins["torchvision"]


def test_the_image_files_run_the_bot_and_its_healthcheck(
    image: ImageFiles, image_install: Installed, model_files: ModelFiles, outside: Path
) -> None:
    """The image's entrypoint starts the bot with the image's config (its /data paths moved to a
    folder here, Discord and the models pointed at the tests'), and its HEALTHCHECK passes."""
    (entrypoint,) = image.instructions("ENTRYPOINT")
    command = json.loads(entrypoint)[0]
    script = image.path(command if command.startswith("/") else f"/usr/local/bin/{command}")
    data = outside / "data"
    data.mkdir()
    baked = image.path("/app/config.toml").read_text().replace("/data", str(data))
    (health,) = image.instructions("HEALTHCHECK")
    check = [word.replace("/data", str(data)) for word in json.loads(health.split("CMD", 1)[1])]

    async def scenario() -> None:
        fake = FakeDiscord(guild_locale="ja")
        await fake.start()
        config = data / "config.toml"
        # The first heartbeat is written at start-up, before the gateway is up: beat every second.
        config.write_text(
            _merge(baked, f"{_bot_settings(fake, model_files)}[health]\ninterval_s = 1\n")
        )
        bot = await start_bot_process(
            None,
            ("sh", str(script)),
            cwd=outside,
            env=image_install.env(PSEUDO_DALLE_CONFIG=str(config), DISCORD_TOKEN=TOKEN),
        )
        try:
            await _two_languages(fake, bot)
            # discord.py calls itself ready 2 s after the last guild arrives; Docker retries too.
            for _ in range(20):
                healthy = await asyncio.to_thread(
                    subprocess.run,
                    check,
                    cwd=outside,
                    env=image_install.env(),
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                if healthy.returncode == 0:
                    break
                await asyncio.sleep(0.5)
            assert healthy.returncode == 0, healthy.stdout + healthy.stderr
            assert (data / "pseudo-dalle.sqlite3").is_file()
            worker = int((await bot.wait_for_log(WORKER_READY)).group(1))
            _assert_ran_from(image_install, {bot.process.pid, worker})
        finally:
            await bot.kill()
            await fake.stop()

    asyncio.run(scenario())


def _merge(baked: str, ours: str) -> str:
    """The image's config with the test's sections added; the image's own keys win where both
    set one (its storage and health paths)."""
    merged = tomllib.loads(ours)
    for section, values in tomllib.loads(baked).items():
        merged.setdefault(section, {}).update(values)
    return "".join(
        f"[{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items()) + "\n"
        for section, values in merged.items()
    )


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)
