"""What Continue and Reroll need (a job's continue state and the picture it was given) is kept
`[storage] keep_days` after a job ends, then removed, so nothing the bot keeps grows without
bound. An owned task sweeps at start-up and every hour."""

from __future__ import annotations

import asyncio
import logging
import time

from bot.jobs.store import Store
from bot.tasks import OwnedTask

log = logging.getLogger("pseudo_dalle.retention")
SWEEP_EVERY_S = 3600.0
DAY_S = 86400.0


class Retention:
    def __init__(self, store: Store, keep_days: float) -> None:
        self.store = store
        self.keep_s = keep_days * DAY_S
        self._task = OwnedTask("retention", self._run)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:
                log.exception("could not remove old continue states")
            await asyncio.sleep(SWEEP_EVERY_S)

    def sweep(self, now: float | None = None) -> tuple[int, int]:
        """Forget what jobs that ended long enough ago needed for Continue and Reroll; returns
        how many continue states and pictures were forgotten."""
        cutoff = (time.time() if now is None else now) - self.keep_s
        states = self.store.forget_continue_states(cutoff)
        pictures = self.store.forget_pictures(cutoff)
        if states or pictures:
            log.info(
                "forgot %d continue state(s) and %d picture(s) of jobs older than the retention "
                "period",
                states,
                pictures,
            )
        return states, pictures
