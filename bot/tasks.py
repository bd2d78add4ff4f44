"""Background work the bot owns: each loop is an `OwnedTask`, started once, logged with its
traceback if it ever stops by an error, and cancelled and awaited when its owner stops, so that
no task is forgotten and no exception vanishes (discord.py's `ext.tasks` does the same for the
front end, but the jobs and the workers never import discord)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("pseudo_dalle.tasks")


class OwnedTask:
    """`body` run as the task `name` between `start` and `stop`."""

    def __init__(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._body = body
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"the {self.name} task is already running")
        self._task = asyncio.create_task(self._body(), name=self.name)
        self._task.add_done_callback(self._ended)

    async def stop(self, timeout_s: float | None = None) -> bool:
        """Cancel the task and wait until it has ended: True once it has, False when it did
        not end within `timeout_s` (it is then left behind, still cancelled)."""
        task, self._task = self._task, None
        if task is None:
            return True
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            return False
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()  # an error was logged when it ended
        return True

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("the %s task stopped", self.name, exc_info=error)
        elif task is self._task:
            log.warning("the %s task ended by itself", self.name)
