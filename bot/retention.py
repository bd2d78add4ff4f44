"""What Continue and Reroll need (a job's continue state and the picture it was given) is kept
`[storage] keep_days` after a job ends, then removed, so nothing the bot keeps grows without
bound. An owned task sweeps at start-up and every hour.

Versions before 0.2 saved each job's latent as a file in `[storage] latents_dir` (134 MB for a
512x512 picture); those files are removed on the same schedule, also ones no job points to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from bot.store import Store

log = logging.getLogger("pseudo_dalle.retention")
SWEEP_EVERY_S = 3600.0
DAY_S = 86400.0


class Retention:
    def __init__(self, store: Store, keep_days: float, latents_dir: Path) -> None:
        self.store = store
        self.keep_s = keep_days * DAY_S
        self.latents_dir = latents_dir.resolve()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:
                log.exception("could not remove old continue states")
            await asyncio.sleep(SWEEP_EVERY_S)

    def sweep(self, now: float | None = None) -> int:
        """Forget what jobs that ended long enough ago needed for Continue and Reroll; delete old
        latent files. Returns how many files were deleted."""
        cutoff = (time.time() if now is None else now) - self.keep_s
        files = {Path(name) for name in self.store.forget_continue_states(cutoff)}
        pictures = self.store.forget_pictures(cutoff)
        if pictures:
            log.info(
                "removed %d picture(s) given to jobs older than the retention period", pictures
            )
        if self.latents_dir.is_dir():
            files |= {
                path
                for path in self.latents_dir.iterdir()
                if path.suffix in (".pt", ".tmp") and path.stat().st_mtime < cutoff
            }
        deleted = 0
        for path in files:
            # Only files in the latents folder: a path in the database never points elsewhere.
            if path.resolve().parent != self.latents_dir:
                log.warning("not deleting %s: it is outside %s", path, self.latents_dir)
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                deleted += 1
        if deleted:
            log.info("removed %d latent file(s) of jobs older than the retention period", deleted)
        return deleted
