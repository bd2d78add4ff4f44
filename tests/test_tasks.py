"""The bot's owned background tasks: started once, crashes logged, stopped and awaited."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.tasks import OwnedTask


def test_a_task_runs_until_stopped_and_cannot_start_twice() -> None:
    async def scenario() -> None:
        ticks: list[int] = []

        async def tick() -> None:
            while True:
                ticks.append(len(ticks))
                await asyncio.sleep(0.01)

        task = OwnedTask("ticker", tick)
        task.start()
        with pytest.raises(RuntimeError, match="ticker task is already running"):
            task.start()
        await asyncio.sleep(0.05)
        assert task.running
        assert await task.stop()
        counted = len(ticks)
        await asyncio.sleep(0.05)
        assert (task.running, len(ticks)) == (False, counted)
        assert await task.stop()  # a second stop has nothing to do

    asyncio.run(scenario())


def test_a_crash_is_logged_with_its_traceback_and_an_early_end_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async def crash() -> None:
            raise ValueError("broken")

        async def done() -> None:
            return

        crashing, ending = OwnedTask("crashing", crash), OwnedTask("ending", done)
        crashing.start()
        ending.start()
        await asyncio.sleep(0.05)
        assert not crashing.running
        assert await crashing.stop()  # its error was logged when it ended, not raised here
        assert await ending.stop()

    with caplog.at_level(logging.WARNING, logger="pseudo_dalle.tasks"):
        asyncio.run(scenario())
    crashed = [r for r in caplog.records if r.getMessage() == "the crashing task stopped"]
    assert len(crashed) == 1
    assert crashed[0].exc_info is not None
    assert isinstance(crashed[0].exc_info[1], ValueError)
    assert "the ending task ended by itself" in caplog.text


def test_a_task_that_will_not_stop_is_left_behind_after_the_timeout() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def stubborn() -> None:
            while not release.is_set():
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    continue  # ignores being cancelled, as a blocked call may

        task = OwnedTask("stubborn", stubborn)
        task.start()
        await asyncio.sleep(0.01)
        assert not await task.stop(timeout_s=0.1)
        release.set()
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
