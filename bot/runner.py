"""The owned background task that feeds the worker one job at a time.

It starts (and restarts) the worker, picks the next job in fair order, forwards progress to the
job's card and records the outcome. If the worker dies mid-job, the job goes back to the queue
(at most `worker.max_requeues` times, then it is marked failed) and the worker is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bot import cards
from bot.config import Config
from bot.store import JobRow, Store
from bot.worker_link import WorkerExited, WorkerLink
from generator.protocol import (
    CancelJob,
    Failed,
    Finished,
    Message,
    Progress,
    StartJob,
    b64_to_png,
)

if TYPE_CHECKING:
    from bot.drawing import Drawing

log = logging.getLogger("pseudo_dalle.runner")


def worker_arguments(config: Config) -> list[str]:
    models, storage = config.models, config.storage
    arguments = [
        "--clip-model", models.clip, "--decoder", models.decoder, "--device", models.device,
        "--latents", str(config.resolve(storage.latents_dir)),
        "--cutouts", str(config.worker.cutouts), "--precision", config.worker.precision,
    ]  # fmt: skip
    if models.cache_dir:
        arguments += ["--cache-dir", str(config.resolve(models.cache_dir))]
    if models.offline:
        arguments.append("--offline")
    return arguments


class JobRunner:
    def __init__(self, drawing: Drawing, store: Store, config: Config) -> None:
        self.drawing = drawing
        self.store = store
        self.config = config
        self.link = WorkerLink(worker_arguments(config))
        self.rate: float | None = None  # iterations per second of the running job
        self.current: JobRow | None = None
        self.current_step = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="job-runner")
        self._task.add_done_callback(self._crashed)

    @staticmethod
    def _crashed(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the job runner stopped", exc_info=task.exception())

    async def stop(self) -> None:
        """Shut down: the running job goes back to the queue and its card says it will resume."""
        interrupted = self.current
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.link.stop(grace_s=1.0)
        current = self.store.job(interrupted.id) if interrupted is not None else None
        if current is not None and current.status == "running":
            job = self.store.update(
                current.id, status="queued", started_at=None, steps=0,
                notice="The bot is restarting; this drawing will start again when it is back.",
            )  # fmt: skip
            await self.drawing.show(job, ["Waiting for the bot to come back"])

    def wake(self) -> None:
        self._wakeup.set()

    def remaining_seconds(self) -> float | None:
        """Time until the running job ends (0 when idle); None while the speed is unknown."""
        if self.current is None:
            return 0.0
        if not self.rate:
            return None
        return (self.current.iterations - self.current_step) / self.rate

    async def cancel_running(self, job_id: int, by: int) -> None:
        self.store.update(job_id, notice=f"Cancelled by <@{by}>.")
        await self.link.send(CancelJob(job_id))

    async def _run(self) -> None:
        await self.drawing.refresh_queue()
        while True:
            try:
                await self._next()
            except Exception:
                log.exception("the job runner hit an error; restarting the worker")
                await self._recover()

    async def _next(self) -> None:
        if not self.link.alive:
            await self._start_worker()
            return
        order = self.store.queue_order()
        if not order:
            await self._idle()
            return
        await self._draw(order[0])

    async def _recover(self) -> None:
        """After an unexpected error: the interrupted job waits again, the worker starts fresh."""
        for job in self.store.jobs_with_status("running"):
            self.store.update(job.id, status="queued", started_at=None, steps=0)
        self.current, self.rate = None, None
        await self.link.stop()
        await asyncio.sleep(self.config.worker.restart_delay_s)

    async def _start_worker(self) -> None:
        try:
            await self.link.start()
        except (RuntimeError, TimeoutError, OSError) as error:
            log.error("could not start the worker: %s; trying again", error)
            await self.link.stop()
            await asyncio.sleep(self.config.worker.restart_delay_s)

    async def _idle(self) -> None:
        """Wait for a new job, or notice the worker dying while idle."""
        self._wakeup.clear()
        waiter = asyncio.create_task(self._wakeup.wait())
        message = asyncio.create_task(self.link.messages.get())
        try:
            done, _ = await asyncio.wait({waiter, message}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not message.done():
                message.cancel()
        if message in done and isinstance(message.result(), WorkerExited):
            await asyncio.sleep(self.config.worker.restart_delay_s)

    async def _draw(self, job: JobRow) -> None:
        job = self.store.update(job.id, status="running", started_at=time.time(), steps=0)
        self.current, self.current_step, self.rate = job, 0, None
        settings = self.store.guild_settings(job.guild_id)
        interval = max(settings.progress_interval_s, self.config.limits.min_progress_interval_s)
        await self.drawing.show(job, ["Starting…"])
        await self.link.send(
            StartJob(
                job_id=job.id, prompt=job.prompt, seed=job.seed, iterations=job.iterations,
                width=job.size, height=job.size, progress_every_s=interval,
                init_latent=job.init_latent if job.init_latent and Path(job.init_latent).is_file()
                else None,
            )
        )  # fmt: skip
        await self.drawing.refresh_queue()
        try:
            while True:
                message = await self.link.messages.get()
                if await self._handle(job, message):
                    break
        finally:
            self.current, self.rate = None, None
        await self.drawing.refresh_queue()

    async def _handle(self, job: JobRow, message: Message | WorkerExited) -> bool:
        """Act on one message about the running job; True once the job is over."""
        if isinstance(message, WorkerExited):
            await self._worker_died(job)
            return True
        if getattr(message, "job_id", job.id) != job.id:
            log.warning("ignoring %s about another job while job %s runs", message.kind, job.id)
            return False
        if isinstance(message, Progress):
            self.current_step, self.rate = message.step, message.iterations_per_second
            current = self.store.update(job.id, steps=message.step)
            lines = cards.running_lines(message.step, message.total, message.iterations_per_second)
            await self.drawing.show(current, lines, b64_to_png(message.png_b64))
            return False
        if isinstance(message, Finished):
            outcome: dict[str, object] = {
                "status": "cancelled" if message.cancelled else "done", "steps": message.steps,
                "seconds": message.seconds, "latent": message.latent, "finished_at": time.time(),
            }  # fmt: skip
            if not message.cancelled:
                outcome["notice"] = None
            done = self.store.update(job.id, **outcome)
            await self.drawing.finish(done, message.png_b64)
            return True
        if isinstance(message, Failed):
            failed = self.store.update(
                job.id, status="failed", error=message.reason, finished_at=time.time()
            )
            await self.drawing.finish(failed, None)
            return True
        return False

    async def _worker_died(self, job: JobRow) -> None:
        requeues = job.requeues + 1
        if requeues > self.config.worker.max_requeues:
            failed = self.store.update(
                job.id, status="failed", finished_at=time.time(), requeues=requeues,
                error=f"The drawing worker stopped {requeues} times while drawing this.",
            )  # fmt: skip
            await self.drawing.finish(failed, None)
        else:
            self.store.update(
                job.id, status="queued", started_at=None, steps=0, requeues=requeues,
                notice="The drawing worker stopped unexpectedly; this job went back to the queue.",
            )  # fmt: skip
        await self.link.stop()
        await asyncio.sleep(self.config.worker.restart_delay_s)
