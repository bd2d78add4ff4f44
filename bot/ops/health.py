"""The heartbeat file behind Docker's HEALTHCHECK.

The bot rewrites the file with whether its gateway connection and its workers are up: at once
when the gateway becomes ready, resumes or drops and when a worker joins or leaves, and every
`[health] interval_s` besides; `pseudo-dalle healthcheck` reads it. A stale file means the bot's
event loop is stuck or the bot is gone. Checking imports nothing heavy, so it is cheap to run
every 30 seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.jobs.events import JobEvent, WorkersChanged
from bot.tasks import OwnedTask

log = logging.getLogger("pseudo_dalle.health")
# The discord.py events after which the gateway's state has changed.
GATEWAY_CHANGES = ("on_ready", "on_resumed", "on_disconnect")


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
    """Writes the heartbeat file: on every change it hears of, and every `interval_s`."""

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
        self._task = OwnedTask("heartbeat", self._run)

    def start(self) -> None:
        self._task.start()

    def beat(self) -> None:
        """Write the file now."""
        try:
            write_heartbeat(self.path, Heartbeat(time.time(), self.gateway(), self.worker()))
        except OSError as error:
            log.warning("could not write the heartbeat file %s: %s", self.path, error)

    def on_event(self, event: JobEvent) -> None:
        if isinstance(event, WorkersChanged) and self._task.running:
            self.beat()

    async def on_gateway(self, *_: object) -> None:
        """A discord.py listener for `GATEWAY_CHANGES`."""
        if self._task.running:
            self.beat()

    async def _run(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        await self._task.stop()
        self.path.unlink(missing_ok=True)
