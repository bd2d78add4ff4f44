"""Faults through the real processes: Discord going away, the bot dying, its input closing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.jobs.store import Store
from bot.limits import GuildLimits

from .bot_harness import (
    TOKEN,
    BotProcess,
    run,
    running_bot,
    start_bot_process,
    text_of,
    wait_for_card,
    wait_for_job,
    wait_until_gone,
    write_config,
)
from .conftest import ModelFiles
from .fake_discord import ALICE, FakeDiscord

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKER_READY = r"worker \S+ \(pid (\d+)\) ready on"
LONG_JOBS = "max_iterations = 100000"


def test_discord_outage_keeps_the_job_drawing_and_its_card_catches_up(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="steady", iterations=400, size=64)
            )
            await wait_for_card(fake, 1, "Drawing")
            started = running.store.job(1)
            assert started is not None
            await fake.go_offline()
            # Progress reports keep coming while Discord refuses connections (some 20 s: the
            # presenter's retries reach their longest wait); none restarts the job or the worker.
            done = await wait_for_job(running.store, 1, lambda j: j.status == "done", 120)
            assert (done.steps, done.requeues) == (400, 0)
            assert done.started_at == started.started_at
            since = len(fake.events)
            await fake.go_online()
            final = await wait_for_card(fake, 1, "Finished", since=since, timeout=60)
            assert "400 iterations in" in text_of(final)
            assert final.files

    run(scenario())


@contextlib.asynccontextmanager
async def _bot_drawing_a_long_job(
    tmp_path: Path, files: ModelFiles, defaults: str
) -> AsyncIterator[tuple[FakeDiscord, BotProcess, int]]:
    """The bot in its own process, drawing job 1 (100,000 iterations); its worker's pid."""
    fake = FakeDiscord()
    await fake.start()
    defaults = f"default_iterations = 20\nmax_iterations = 100000\n{defaults}"
    config = write_config(tmp_path, fake, files, defaults=defaults, limits=LONG_JOBS)
    bot = await start_bot_process(config)
    try:
        await asyncio.wait_for(fake.identified.wait(), 60)
        await fake.wait_for(lambda: fake.commands)
        await fake.reply_to(
            await fake.command(ALICE, "draw", prompt="patience", iterations=100000, size=64)
        )
        await wait_for_card(fake, 1, "Drawing")
        worker = int((await bot.wait_for_log(WORKER_READY)).group(1))
        yield fake, bot, worker
    finally:
        await bot.kill()
        await fake.stop()


async def _stopped_promptly(bot: BotProcess, fake: FakeDiscord, *, hang: bool) -> str:
    """SIGTERM the bot (waiting for a message write to hang when `hang`); it exits 0 within
    10 s. Its log."""
    asked = time.monotonic()
    bot.process.send_signal(signal.SIGTERM)
    if hang:
        await fake.wait_for(lambda: fake.hung, timeout=10)
    code = await bot.exited(timeout=30)
    took = time.monotonic() - asked
    log = "".join(bot.log)
    assert code == 0, log
    assert took < 10, log
    return log


def test_sigterm_during_a_discord_outage_exits_promptly_and_requeues(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with _bot_drawing_a_long_job(tmp_path, model_files, "") as (fake, bot, worker):
            await fake.go_offline()
            # Let discord.py lose the gateway and fall asleep before its next reconnect.
            await bot.wait_for_log("Attempting a reconnect")
            log = await _stopped_promptly(bot, fake, hang=False)
            assert "job(s) 1 out of date" in log
            assert TOKEN not in log
            await wait_until_gone(worker, timeout=1)
        store = Store(tmp_path / "bot.sqlite3", GuildLimits())
        job = store.job(1)
        store.close()
        assert job is not None
        assert (job.status, job.steps) == ("queued", 0)

    run(scenario())


def test_sigterm_while_discord_hangs_on_a_card_exits_promptly_and_says_so(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    # No progress report for a minute: the card the bot is posting when it stops is the one
    # that says the job will resume, and Discord never answers it.
    quiet = "progress_interval_s = 60"

    async def scenario() -> None:
        async with _bot_drawing_a_long_job(tmp_path, model_files, quiet) as (fake, bot, _):
            fake.hang_messages = True
            log = await _stopped_promptly(bot, fake, hang=True)
            assert "job(s) 1 out of date" in log

    run(scenario())


def test_worker_stops_when_its_bot_is_killed(model_files: ModelFiles, tmp_path: Path) -> None:
    # No progress report for a minute: the worker has nothing to write, so only the end of its
    # input can tell it that the bot is gone.
    quiet = "progress_interval_s = 60"

    async def scenario() -> None:
        async with _bot_drawing_a_long_job(tmp_path, model_files, quiet) as (_, bot, worker):
            await asyncio.sleep(1)  # the job goes to the worker right after its card
            bot.process.send_signal(signal.SIGKILL)
            assert await bot.exited(timeout=10) == -signal.SIGKILL
            assert await wait_until_gone(worker, timeout=5) < 5

    run(scenario())
