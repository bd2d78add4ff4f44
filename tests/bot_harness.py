"""Run the real bot against the fake Discord: with the real worker on tiny models, or with the
workers' transport replaced by the test's puppets (`tests.fake_workers`)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Config, load_config
from bot.jobs.store import JobRow, Store
from bot.ops.launcher import App, assemble, point_discord_at
from bot.workers.transport import WorkerTransport

from .conftest import ModelFiles
from .fake_discord import CHANNEL_ID, Event, FakeDiscord, message_text
from .fake_workers import FakeWorkers

TOKEN = "test-token-never-shown"
# One torch thread: the machines running the tests have two cores, shared with the bot's event
# loop, the fake Discord and whatever else runs.
WORKER = "cutouts = 4\nrestart_delay_s = 0.2\nthreads = 1"
# A tiny random CLIP's screening scores mean nothing (every text embeds alike), so bots with a
# real worker draw unscreened unless a test says otherwise; puppet workers report scores.
UNSCREENED = "picture_screening = false\nrequire_picture_screening = false"
GUILD_READY_S = 0.05


def write_config(folder: Path, fake: FakeDiscord, files: ModelFiles, **sections: str) -> Path:
    """A config for the tests; `sections` replace whole sections, e.g. limits='...', except
    `images`, whose lines are added to the fake Discord's CDN origin."""
    images = sections.pop("images", "")
    parts = {
        "discord": f'token = "{TOKEN}"\napi_base = "{fake.api_base}"\n'
        f'gateway_url = "{fake.gateway_url}"',
        "models": f'clip = "{files.clip_torchscript}"\ndecoder = "{files.decoder_pickle}"\n'
        f'encoder = "{files.encoder_pickle}"\ndevice = "cpu"\noffline = true',
        "worker": WORKER,
        "defaults": "default_iterations = 20\nmax_iterations = 2000\nmax_queued_per_user = 2\n"
        "progress_interval_s = 2\nmax_size = 512",
        "storage": 'database = "bot.sqlite3"',
        "images": f'cdn_origins = ["{fake.base_url}"]\n{images}',
        "logging": 'level = "INFO"',
        "moderation": UNSCREENED,
    }
    parts.update(sections)
    path = folder / "config.toml"
    path.write_text("".join(f"[{name}]\n{body}\n\n" for name, body in parts.items()))
    return path


@dataclass
class Running:
    app: App
    task: asyncio.Task[None]
    stopped: bool = False

    @property
    def store(self) -> Store:
        return self.app.store

    async def stop(self) -> None:
        """Stop the bot as the launcher does, and close its store; a second stop does nothing."""
        if self.stopped:
            return
        self.stopped = True
        await self.app.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.store.close()

    async def worker_pid(self, timeout: float = 60) -> int:
        """The process id of the (first) worker, once one is ready."""
        deadline = time.monotonic() + timeout
        while not (workers := self.app.scheduler.workers()):
            if time.monotonic() > deadline:
                raise TimeoutError("no worker became ready")
            await asyncio.sleep(0.05)
        return workers[0].pid


async def start_bot(
    config: Config, fake: FakeDiscord, transport: WorkerTransport | None = None
) -> Running:
    """The bot wired by the launcher's own `assemble`, logged in and ready; `transport` in place
    of the one `config` names."""
    point_discord_at(config)
    fake.identified.clear()
    app = assemble(config, transport)
    # discord.py calls itself ready only once no guild has arrived for this long (2 s by
    # default); the fake Discord sends its one guild at once, so that wait is only waiting.
    app.bot._connection.guild_ready_timeout = GUILD_READY_S
    task = await app.start(config.discord.token)
    bot = app.bot
    ready = asyncio.create_task(bot.wait_until_ready())
    await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    if not ready.done():
        raise TimeoutError("the bot did not become ready")
    return Running(app, task)


@contextlib.asynccontextmanager
async def running_bot(
    folder: Path,
    files: ModelFiles,
    guild_locale: str = "en-US",
    transport: WorkerTransport | None = None,
    **sections: str,
) -> AsyncIterator[tuple[FakeDiscord, Running, Config]]:
    fake = FakeDiscord(guild_locale)
    await fake.start()
    config = load_config(write_config(folder, fake, files, **sections), environ={})
    running = await start_bot(config, fake, transport)
    try:
        yield fake, running, config
    finally:
        await running.stop()
        await fake.stop()


@contextlib.asynccontextmanager
async def bot_with_puppets(
    folder: Path, files: ModelFiles, *, joined_places: int = 0, **sections: str
) -> AsyncIterator[tuple[FakeDiscord, Running, Config, FakeWorkers]]:
    """The real bot above puppet workers (`tests.fake_workers`); with `joined_places`, one of
    them has joined with that many places, holding the main CLIP, else none yet. Pictures are
    screened as the operator's defaults say (the puppets report scores)."""
    sections.setdefault("moderation", "")
    workers = FakeWorkers()
    async with running_bot(folder, files, transport=workers, **sections) as (fake, bot, config):
        if joined_places:
            workers.join(places=joined_places, clip_models=(config.models.clip,))
        yield fake, bot, config, workers


def cards_of(
    fake: FakeDiscord, job_id: int, since: int = 0, channel_id: int = CHANNEL_ID
) -> list[Event]:
    """Creates and edits of job `job_id`'s card in `channel_id`, in order, from event number
    `since` on (the card in English or Japanese)."""
    marker = re.compile(rf"· (job|ジョブ) {job_id}$")
    return [
        e
        for e in fake.events[since:]
        if e.kind in ("create", "edit")
        and e.channel_id == channel_id
        and any(marker.search(embed.get("title") or "") for embed in e.payload.get("embeds", []))
    ]


def title(event: Event) -> str:
    return str(event.payload["embeds"][0]["title"])


async def wait_for_card(
    fake: FakeDiscord,
    job_id: int,
    state: str,
    *,
    since: int = 0,
    timeout: float = 90,
    containing: str = "",
    channel_id: int = CHANNEL_ID,
) -> Event:
    """The latest card of `job_id` in `state` (and saying `containing`) in `channel_id`,
    waiting for one to appear after event `since`."""

    def found() -> Event | None:
        matches = [
            e
            for e in cards_of(fake, job_id, since, channel_id)
            if title(e).startswith(state) and containing in message_text(e)
        ]
        return matches[-1] if matches else None

    return await fake.wait_for(found, timeout)  # type: ignore[no-any-return]


async def wait_for_job(
    store: Store, job_id: int, check: Callable[[JobRow], bool], timeout: float = 90
) -> JobRow:
    async def poll() -> JobRow:
        while True:
            job = store.job(job_id)
            if job is not None and check(job):
                return job
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


def custom_ids(event: Event) -> list[str]:
    return [
        c["custom_id"] for row in event.payload.get("components", []) for c in row["components"]
    ]


def text_of(event: Event) -> str:
    return message_text(event)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@dataclass
class BotProcess:
    """The real `pseudo-dalle bot` command in its own process; its log is kept as it comes."""

    process: asyncio.subprocess.Process
    log: list[str]
    reader: asyncio.Task[None]

    async def wait_for_log(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        async def poll() -> re.Match[str]:
            while True:
                for line in self.log:
                    if match := re.search(pattern, line):
                        return match
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(poll(), timeout)

    async def exited(self, timeout: float) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await self.reader
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self.reader


# `pseudo-dalle` as the console script runs it, in the test environment; the bot's command.
PSEUDO_DALLE = (
    sys.executable,
    "-c",
    "import sys; from pseudo_dalle.cli import main; sys.exit(main())",
)
BOT_COMMAND = (*PSEUDO_DALLE, "bot")


def pseudo_dalle(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`pseudo-dalle ARGS` in its own process, as the shell sees it."""
    return subprocess.run(
        [*PSEUDO_DALLE, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


async def start_bot_process(
    config: Path | None,
    command: Sequence[str] = BOT_COMMAND,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> BotProcess:
    """`command` (by default the bot of the test environment) with `--config config`, if given."""
    options = ("--config", str(config)) if config is not None else ()
    process = await asyncio.create_subprocess_exec(
        *command, *options, stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env
    )
    log: list[str] = []

    async def read() -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            log.append(line.decode(errors="replace"))

    return BotProcess(process, log, asyncio.create_task(read()))


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie that nobody reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def wait_until_gone(pid: int, timeout: float) -> float:
    """Seconds until `pid` exits; TimeoutError if it is still running after `timeout`."""
    began = time.monotonic()
    while not process_gone(pid):
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"process {pid} still runs after {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - began
