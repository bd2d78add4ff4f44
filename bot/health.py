"""The heartbeat file behind Docker's HEALTHCHECK.

The bot rewrites the file every few seconds with whether its gateway connection and its worker
are up; `pseudo-dalle healthcheck` reads it. A stale file means the bot's event loop is stuck
or the bot is gone. Checking imports nothing heavy, so it is cheap to run every 30 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("pseudo_dalle.health")


@dataclass(frozen=True)
class Heartbeat:
    time: float
    gateway: bool
    worker: bool


def write_heartbeat(path: Path, beat: Heartbeat) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(asdict(beat), tmp)
    os.replace(tmp.name, path)


def check_heartbeat(path: Path, max_age_s: float, now: float | None = None) -> str | None:
    """None when healthy, else why not."""
    try:
        beat = Heartbeat(**json.loads(path.read_text()))
    except FileNotFoundError:
        return f"no heartbeat file at {path}: the bot is not running (or not yet started)"
    except (OSError, ValueError, TypeError) as error:
        return f"unreadable heartbeat file {path}: {error}"
    age = (time.time() if now is None else now) - beat.time
    if not math.isfinite(age) or age > max_age_s:
        return f"the bot's last heartbeat is {age:.0f} s old (limit {max_age_s:g} s)"
    if not beat.gateway:
        return "the bot has lost its connection to Discord's gateway"
    if not beat.worker:
        return "no drawing worker is ready (none connected, or its models are still loading)"
    return None


class HeartbeatWriter:
    """An owned task that writes the heartbeat file until stopped."""

    def __init__(
        self,
        path: Path,
        interval_s: float,
        gateway: Callable[[], bool],
        worker: Callable[[], bool],
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.gateway = gateway
        self.worker = worker
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def _run(self) -> None:
        while True:
            try:
                beat = Heartbeat(time.time(), bool(self.gateway()), bool(self.worker()))
                write_heartbeat(self.path, beat)
            except OSError as error:
                log.warning("could not write the heartbeat file %s: %s", self.path, error)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.path.unlink(missing_ok=True)
