"""The owned background task that feeds the worker, up to `worker.max_batch` jobs at a time.

It starts (and restarts) the worker, fills the worker's free places with the next jobs in fair
order, forwards progress to each job's card and records the outcomes. If the worker dies, its
jobs go back to the queue (each at most `worker.max_requeues` times, then it is marked failed)
and the worker is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot import cards
from bot.config import Config
from bot.store import JobRow, JobStatus, Store
from bot.worker_link import WorkerExited, WorkerLink
from generator.protocol import (
    CancelJob,
    Failed,
    Finished,
    Message,
    Preparing,
    Progress,
    StartJob,
    b64_to_png,
)

if TYPE_CHECKING:
    from bot.drawing import Drawing

log = logging.getLogger("pseudo_dalle.runner")
# The worker stops at its next step once its input closes; a step that takes longer than this
# (a big picture on a CPU) is cut short, since the job starts again after the restart anyway.
WORKER_STOP_GRACE_S = 3.0


def worker_arguments(config: Config) -> list[str]:
    models, storage = config.models, config.storage
    arguments = [
        "--clip-model", models.clip, "--decoder", models.decoder, "--device", models.device,
        "--latents", str(config.resolve(storage.latents_dir)),
        "--cutouts", str(config.worker.cutouts), "--precision", config.worker.precision,
        "--max-batch", str(config.worker.max_batch), "--threads", str(config.worker.threads),
        "--relaxation", config.worker.relaxation,
    ]  # fmt: skip
    if config.worker.checkpointing:
        arguments.append("--checkpointing")
    if config.worker.compile:
        arguments.append("--compile")
    if not config.worker.cuda_graphs:
        arguments.append("--no-cuda-graphs")
    if models.cache_dir:
        arguments += ["--cache-dir", str(config.resolve(models.cache_dir))]
    if models.offline:
        arguments.append("--offline")
    return arguments


@dataclass
class Running:
    """A job the worker is drawing: its row as started and its latest progress."""

    row: JobRow
    step: int = 0
    rate: float | None = None  # iterations per second, once the worker has reported


class JobRunner:
    def __init__(self, drawing: Drawing, store: Store, config: Config) -> None:
        self.drawing = drawing
        self.store = store
        self.config = config
        self.link = WorkerLink(worker_arguments(config))
        self.running: dict[int, Running] = {}  # by job id, in the order they started
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def places(self) -> int:
        """How many jobs the worker draws together."""
        return self.config.worker.max_batch

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="job-runner")
        self._task.add_done_callback(self._crashed)

    @staticmethod
    def _crashed(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the job runner stopped", exc_info=task.exception())

    async def stop(self) -> None:
        """Shut down: running jobs go back to the queue and their cards say they will resume."""
        interrupted = list(self.running)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.link.stop(grace_s=WORKER_STOP_GRACE_S)
        for job_id in interrupted:
            current = self.store.job(job_id)
            if current is not None and current.status == JobStatus.RUNNING:
                job = self.store.requeue(
                    current.id,
                    "The bot is restarting; this drawing will start again when it is back.",
                )
                self.drawing.show(job, ["Waiting for the bot to come back"])

    def wake(self) -> None:
        self._wakeup.set()

    def start_estimates(self, order: list[JobRow]) -> list[float | None]:
        """Seconds until each queued job of `order` starts (None where a speed is unknown).

        Simulates the worker's places: each frees when its job ends, and the next job in fair
        order takes the place that frees first.
        """
        frees: list[float] = [0.0] * max(self.places - len(self.running), 0)
        for entry in self.running.values():
            if not entry.rate:
                return [None] * len(order)
            frees.append((entry.row.iterations - entry.step) / entry.rate)
        rates = [e.rate for e in self.running.values() if e.rate]
        estimates: list[float | None] = []
        for job in order:
            rate = sum(rates) / len(rates) if rates else self.store.recent_speed(job.size)
            if rate is None or not frees:
                return estimates + [None] * (len(order) - len(estimates))
            frees.sort()
            begins = frees.pop(0)
            estimates.append(begins)
            frees.append(begins + job.iterations / rate)
        return estimates

    async def cancel_running(self, job_id: int, by: int) -> None:
        self.store.note(job_id, f"Cancelled by <@{by}>.")
        await self.link.send(CancelJob(job_id))

    async def _run(self) -> None:
        self.drawing.refresh_queue()
        while True:
            try:
                await self._next()
            except Exception:
                log.exception("the job runner hit an error; restarting the worker")
                await self._recover()

    async def _next(self) -> None:
        """Fill the worker's free places in fair order, then act on one event."""
        self._wakeup.clear()
        if not self.link.alive:
            await self._start_worker()
            return
        while len(self.running) < self.places and (order := self.store.queue_order()):
            await self._begin(order[0])
        message = await self._wait()
        if message is not None:
            await self._handle(message)

    async def _recover(self) -> None:
        """After an unexpected error: interrupted jobs wait again, the worker starts fresh."""
        for job in self.store.jobs_with_status(JobStatus.RUNNING):
            self.store.requeue(job.id, None)
        self.running.clear()
        await self.link.stop()
        await asyncio.sleep(self.config.worker.restart_delay_s)

    async def _start_worker(self) -> None:
        try:
            await self.link.start()
        except (RuntimeError, TimeoutError, OSError) as error:
            log.error("could not start the worker: %s; trying again", error)
            await self.link.stop()
            await asyncio.sleep(self.config.worker.restart_delay_s)

    async def _wait(self) -> Message | WorkerExited | None:
        """The worker's next message, or None when woken for a new job while a place is free."""
        message = asyncio.create_task(self.link.messages.get())
        waiters: set[asyncio.Task[object]] = {message}
        if len(self.running) < self.places:
            waiters.add(asyncio.create_task(self._wakeup.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                if not task.done():
                    task.cancel()
        return message.result() if message.done() and not message.cancelled() else None

    async def _begin(self, job: JobRow) -> None:
        job = self.store.start(job.id)
        self.running[job.id] = Running(job)
        settings = self.store.guild_settings(job.guild_id)
        interval = max(settings.progress_interval_s, self.config.limits.min_progress_interval_s)
        self.drawing.show(job, ["Starting…", *self._sharing_lines(job.id)])
        await self.link.send(
            StartJob(
                job_id=job.id, prompt=job.prompt, seed=job.seed, iterations=job.iterations,
                width=job.size, height=job.size, progress_every_s=interval,
                init_latent=job.init_latent if job.init_latent and Path(job.init_latent).is_file()
                else None,
            )
        )  # fmt: skip
        self.drawing.refresh_queue()

    def _sharing_lines(self, job_id: int) -> list[str]:
        others = [f"job {other}" for other in self.running if other != job_id]
        return [f"Sharing the worker with {', '.join(others)}"] if others else []

    async def _handle(self, message: Message | WorkerExited) -> None:
        """Act on one message from the worker."""
        if isinstance(message, WorkerExited):
            await self._worker_died()
            return
        job_id = getattr(message, "job_id", None)
        entry = self.running.get(job_id) if isinstance(job_id, int) else None
        if entry is None:
            if job_id is not None:
                log.warning("ignoring %s about job %s, which is not running", message.kind, job_id)
            return
        if isinstance(message, Preparing):
            lines = [f"Preparing: {message.reason}; the first picture of each size waits for it"]
            self.drawing.show(entry.row, [*lines, *self._sharing_lines(entry.row.id)])
        elif isinstance(message, Progress):
            entry.step, entry.rate = message.step, message.iterations_per_second
            current = self.store.progress(entry.row.id, message.step)
            lines = cards.running_lines(message.step, message.total, message.iterations_per_second)
            lines += self._sharing_lines(entry.row.id)
            self.drawing.show(current, lines, b64_to_png(message.png_b64))
        elif isinstance(message, Finished):
            del self.running[entry.row.id]
            ended = self.store.cancel if message.cancelled else self.store.finish
            done = ended(
                entry.row.id, steps=message.steps, seconds=message.seconds, latent=message.latent
            )
            self.drawing.finish(done, message.png_b64)
            self.drawing.refresh_queue()
        elif isinstance(message, Failed):
            del self.running[entry.row.id]
            failed = self.store.fail(entry.row.id, message.reason)
            self.drawing.finish(failed, None)
            self.drawing.refresh_queue()

    async def _worker_died(self) -> None:
        """Every job the worker was drawing goes back to the queue, or fails after too many
        tries; then the worker is restarted."""
        for job_id in list(self.running):
            del self.running[job_id]
            job = self.store.job(job_id)
            if job is None or job.status != JobStatus.RUNNING:
                continue
            requeues = job.requeues + 1
            if requeues > self.config.worker.max_requeues:
                failed = self.store.fail(
                    job.id, f"The drawing worker stopped {requeues} times while drawing this.",
                    requeues=requeues,
                )  # fmt: skip
                self.drawing.finish(failed, None)
            else:
                self.store.requeue(
                    job.id, "The drawing worker stopped unexpectedly; this job went back to the "
                    "queue.", requeues=requeues,
                )  # fmt: skip
        self.drawing.refresh_queue()
        await self.link.stop()
        await asyncio.sleep(self.config.worker.restart_delay_s)
