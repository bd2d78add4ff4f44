"""The scheduler: the one place that decides which job is drawn where, and when.

An owned task dispatches the next jobs in fair order whenever the workers have free places
(never more jobs than places, so turns stay fair however many workers there are), records what
the workers report in the store and publishes job events (`bot.jobs.events`) for whoever listens.
A worker that leaves takes its jobs with it, and they go back to the queue; through a transport
that keeps jobs (Redis), another worker takes them over instead. Either way a job restarts at
most `max_requeues` times, then it is marked failed. Members' requests reach it through
`added` and `cancel`, each job with its `JobSpec` decided already (`bot.jobs.spec`): the
scheduler only chooses where and when a job is drawn, and sends the spec as it is. It never
reaches into Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from enum import Enum

from bot.i18n import N_, notice, reason_notice
from bot.jobs.estimates import Running, start_times
from bot.jobs.events import (
    JobEnded,
    JobEvents,
    JobHandedOver,
    JobPaused,
    JobPreparing,
    JobProgress,
    JobStarting,
    PictureWithheld,
    PromptRefused,
    QueueChanged,
    Waiting,
    WorkersChanged,
)
from bot.jobs.pictures import GivenPicture
from bot.jobs.screening import PictureGate
from bot.jobs.store import JobRow, JobStatus, Store
from bot.moderation.rules import Source
from bot.tasks import OwnedTask
from bot.workers.transport import (
    FromWorker,
    WorkerEvent,
    WorkerInfo,
    WorkerJoined,
    WorkerLeft,
    WorkerTransport,
)
from generator.contract.jobs import JobSpec, PictureData
from generator.contract.protocol import (
    CheckMeaning,
    Failed,
    Finished,
    MeaningChecked,
    Preparing,
    Progress,
    StartJob,
    Taken,
    b64_to_png,
    png_to_b64,
)
from generator.contract.reasons import PROMPT_MEANING
from generator.contract.screening import Scores
from generator.contract.weights import clip_label

log = logging.getLogger("pseudo_dalle.scheduler")
CHECK_TIMEOUT_S = 30.0  # how long a member waits for a worker to check a prompt by meaning
NO_WORKER_HOLDS = N_(
    "This quality needs the CLIP model {model}, which no drawing worker holds: draw at a lower "
    "quality, or ask the bot's operator to add it."
)
# A worker stops at its next step once told to; a step that takes longer than this (a big
# picture on a CPU) is cut short, since the job starts again after the restart anyway.
WORKER_STOP_GRACE_S = 3.0


class Cancelled(Enum):
    NOW = "now"  # it was waiting: cancelled at once
    AFTER_STEP = "after step"  # it is being drawn: its worker stops it after the current step


class Scheduler:
    def __init__(
        self,
        store: Store,
        workers: WorkerTransport,
        events: JobEvents,
        *,
        max_requeues: int,
        gate: PictureGate | None = None,
    ) -> None:
        self.store = store
        self.transport = workers
        self.events = events
        self.max_requeues = max_requeues
        self.gate = gate or PictureGate(store)
        self.running: dict[int, Running] = {}  # by job id, in the order they started
        self._wakeup = asyncio.Event()
        self._task = OwnedTask("scheduler", self._run)
        self._receiving: asyncio.Task[WorkerEvent] | None = None
        self._checks: dict[int, asyncio.Future[MeaningChecked]] = {}  # by check id

    # -- what others ask -----------------------------------------------------------------
    def workers(self) -> list[WorkerInfo]:
        return self.transport.workers()

    def free_places(self) -> int:
        return max(self.places() - len(self.running), 0)

    def busy(self, worker_id: str) -> int:
        """How many of `worker_id`'s places its jobs take."""
        return sum(1 for entry in self.running.values() if entry.worker == worker_id)

    def places(self) -> int:
        """How many jobs the ready workers draw together."""
        return sum(worker.places for worker in self.transport.workers())

    def missing_models(self, clip_models: Sequence[str]) -> tuple[str, ...]:
        """Which of `clip_models` the ready workers lack: empty when one of them holds them
        all, or when no worker is ready yet to say."""
        shortfalls = [
            tuple(m for m in clip_models if m not in worker.clip_models)
            for worker in self.transport.workers()
        ]
        if not shortfalls or not all(shortfalls):
            return ()
        return min(shortfalls, key=len)

    async def meaning_of(self, spec: JobSpec) -> MeaningChecked | None:
        """A worker's answer to a check of `spec`'s prompt by meaning, before it is queued; None
        when no worker is ready or none answered within `CHECK_TIMEOUT_S`. The id is random, so
        that an answer from before a restart of the bot never matches a new check."""
        if not self.transport.workers():
            return None
        check_id = secrets.randbelow(2**53)
        answer: asyncio.Future[MeaningChecked] = asyncio.get_running_loop().create_future()
        self._checks[check_id] = answer
        try:
            await self.transport.check(CheckMeaning(check_id, spec.prompt, spec.text_encoder))
            return await asyncio.wait_for(answer, CHECK_TIMEOUT_S)
        except TimeoutError:
            log.warning("no worker checked a prompt by meaning within %g s", CHECK_TIMEOUT_S)
            return None
        finally:
            del self._checks[check_id]

    def added(self, job: JobRow) -> None:
        """A job joined the queue (`Store.add_job`): it is dispatched in its turn."""
        self._queue_changed(added=job.id)
        self._wakeup.set()

    async def cancel(self, job: JobRow, by: int) -> Cancelled:
        """Cancel a waiting or running job on behalf of member `by`."""
        said = notice("Cancelled by <@{member}>.", member=by)
        entry = self.running.get(job.id)
        if entry is not None:
            self.store.note(job.id, said)
            await self.transport.cancel(job.id, entry.worker)
            return Cancelled.AFTER_STEP
        cancelled = self.store.cancel(job.id, notice=said)
        if cancelled is not None:
            self.events.publish(JobEnded(cancelled, None))
        self._queue_changed()
        return Cancelled.NOW

    # -- the task --------------------------------------------------------------------------
    def start(self) -> None:
        self.transport.start()
        self._task.start()

    async def stop(self) -> None:
        """Shut down. Jobs whose worker goes on without the bot (Redis) stay running and their
        cards catch up later; the others go back to the queue and say they will resume."""
        await self._task.stop()
        if self._receiving is not None:
            self._receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiving
        await self.transport.stop(WORKER_STOP_GRACE_S)
        for job_id in list(self.running):
            del self.running[job_id]
            current = self.store.job(job_id)
            if current is None or current.status != JobStatus.RUNNING:
                continue
            if self.transport.keeps_jobs:
                self.events.publish(JobPaused(current, continues=True))
                continue
            job = self.store.requeue(
                current.id,
                notice("The bot is restarting; this drawing will start again when it is back."),
            )
            if job is not None:
                self.events.publish(JobPaused(job))

    async def _reconcile(self) -> None:
        """After a restart: jobs the workers still have stay theirs, the others are queued."""
        held = await self.transport.held_jobs()
        for job in self.store.requeue_interrupted(held):
            log.info("job %s was running when the bot stopped; it is queued again", job.id)
        for job in self.store.jobs_with_status(JobStatus.RUNNING):
            self.running[job.id] = Running(job, None)
            log.info("job %s is still with a worker; its card catches up as it reports", job.id)

    async def _run(self) -> None:
        await self._reconcile()
        self._queue_changed()
        while True:
            try:
                self._wakeup.clear()
                await self._fill()
                event = await self._next_event()
                if event is not None:
                    await self._handle(event)
            except Exception:
                log.exception("the scheduler hit an error; the running jobs go back to the queue")
                await self._recover()

    async def _fill(self) -> None:
        """Dispatch the next jobs in fair order while the workers have free places; a job whose
        CLIP models no ready worker holds fails, saying which."""
        while self.free_places() > 0 and (order := self.store.queue_order()):
            missing = self.missing_models(order[0].spec.clip_models)
            if missing:
                self._refuse(order[0], missing[0])
            else:
                await self._begin(order[0])

    def _refuse(self, job: JobRow, model: str) -> None:
        """Fail a waiting job that no worker can draw; it never took its member's turn."""
        failed = self.store.refuse(job.id, notice(NO_WORKER_HOLDS, model=clip_label(model)))
        if failed is not None:
            self.events.publish(JobEnded(failed, None))
        self._queue_changed()

    async def _next_event(self) -> WorkerEvent | None:
        """What a worker said or did next, or None when woken for a new job."""
        if self._receiving is None:
            self._receiving = asyncio.create_task(self.transport.receive())
        woken = asyncio.create_task(self._wakeup.wait())
        try:
            await asyncio.wait({self._receiving, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        if not self._receiving.done():
            return None
        received, self._receiving = self._receiving, None
        return received.result()

    async def _recover(self) -> None:
        """After an unexpected error: running jobs are stopped and wait again."""
        for job_id, entry in list(self.running.items()):
            del self.running[job_id]
            with contextlib.suppress(Exception):
                await self.transport.cancel(job_id, entry.worker)
            self.store.requeue(job_id, None)
        self._queue_changed()
        await asyncio.sleep(1.0)

    async def _begin(self, job: JobRow) -> None:
        started = self.store.start(job.id)
        if started is None:  # no longer queued: nothing to dispatch
            return
        entry = Running(started, None)
        self.running[job.id] = entry
        picture = self.store.picture(job) if job.spec.image_use else None
        entry.worker = await self.transport.dispatch(
            StartJob(
                job_id=job.id,
                spec=job.spec,
                init_state=job.init_state,
                pictures=[_data(picture)] if picture is not None else [],
            )
        )
        if entry.worker is not None:
            entry.row = self.store.assign(job.id, entry.worker) or entry.row
        self.events.publish(JobStarting(entry.row, entry.worker, self._sharing(job.id)))
        self._queue_changed()

    def _sharing(self, job_id: int) -> tuple[int, ...]:
        worker = self.running[job_id].worker
        if worker is None:
            return ()
        return tuple(o for o, e in self.running.items() if o != job_id and e.worker == worker)

    async def _handle(self, event: WorkerEvent) -> None:
        if isinstance(event, WorkerJoined | WorkerLeft):
            self.events.publish(WorkersChanged(tuple(self.transport.workers())))
        if isinstance(event, WorkerJoined):
            self._queue_changed()
        elif isinstance(event, WorkerLeft):
            self._worker_left(event)
        else:
            await self._from_worker(event)

    async def _from_worker(self, event: FromWorker) -> None:
        message = event.message
        if isinstance(message, MeaningChecked):
            waiting = self._checks.get(message.check_id)
            if waiting is None or waiting.done():
                log.info("ignoring a late answer from worker %s to a prompt check", event.worker_id)
            else:
                waiting.set_result(message)
            return
        job_id = getattr(message, "job_id", None)
        entry = self.running.get(job_id) if isinstance(job_id, int) else None
        if isinstance(message, Taken) and entry is not None:
            await self._taken(entry, message)
            return
        if entry is not None and entry.worker is None:
            # After a restart: the worker the job was last given to, else the one that reports.
            entry.worker = entry.row.worker or event.worker_id
            if entry.row.worker is None:
                entry.row = self.store.assign(entry.row.id, event.worker_id) or entry.row
        if entry is None or entry.worker != event.worker_id:
            if job_id is not None:
                log.warning(
                    "ignoring %s about job %s from worker %s, which does not draw it",
                    message.kind,
                    job_id,
                    event.worker_id,
                )
            return
        if isinstance(message, Preparing):
            self.events.publish(
                JobPreparing(entry.row, message.reason, self._sharing(entry.row.id))
            )
        elif isinstance(message, Progress):
            entry.step, entry.rate = message.step, message.iterations_per_second
            current = self.store.progress(entry.row.id, message.step, worker=event.worker_id)
            if current is None:
                return
            current, png, spoiler = self._screened(
                current, b64_to_png(message.png_b64), message.screening, "preview"
            )
            self.events.publish(
                JobProgress(
                    current,
                    message.step,
                    message.total,
                    message.iterations_per_second,
                    png,
                    self._sharing(entry.row.id),
                    spoiler,
                )
            )
        elif isinstance(message, Finished):
            del self.running[entry.row.id]
            ended = self.store.stopped if message.cancelled else self.store.finish
            done = ended(
                entry.row.id,
                worker=event.worker_id,
                steps=message.steps,
                seconds=message.seconds,
                continue_state=message.continue_state,
            )
            if done is not None:
                self._ended(done, message)
            self._queue_changed()
        elif isinstance(message, Failed):
            reason = reason_notice(message.reason, message.values)
            job = entry.row
            self._failed(job.id, reason, worker=event.worker_id)
            if message.reason == PROMPT_MEANING.code:
                found = str(message.values["concept"])
                self.events.publish(
                    PromptRefused(
                        job.guild_id,
                        job.channel_id,
                        job.user_id,
                        job.spec.prompt,
                        found,
                        Source.MEANING,
                    )
                )

    def _screened(
        self, job: JobRow, data: bytes, scores: Scores | None, what: str
    ) -> tuple[JobRow, bytes | None, bool]:
        """The job (marked withheld where this picture may not be shown), the picture where it
        may be, and whether only as a spoiler. A withheld time-lapse leaves the job's other
        pictures as they are."""
        verdict = self.gate.verdict(job, scores)
        if verdict.show:
            return job, data, verdict.spoiler
        first = not job.withheld
        if first and what != "timelapse":
            job = self.store.withhold(job.id) or job
        log.info("job %s: its %s was withheld (%s)", job.id, what, ", ".join(verdict.crossed))
        self.events.publish(PictureWithheld(job, what, verdict.crossed, data, first))
        return job, None, False

    def _ended(self, job: JobRow, message: Finished) -> None:
        """The final picture and the time-lapse, each as far as it may be shown."""
        job, png, spoiler = self._screened(
            job, b64_to_png(message.png_b64), message.screening, "final"
        )
        timelapse, withheld = _timelapse(message), False
        if timelapse is not None and png is None:
            timelapse, withheld = None, True
        elif timelapse is not None:
            shown_as = self._screened(job, timelapse, message.timelapse_screening, "timelapse")
            timelapse, withheld = shown_as[1], shown_as[1] is None
            spoiler = spoiler or shown_as[2]
        self.events.publish(JobEnded(job, png, timelapse, spoiler, withheld))

    def _failed(
        self,
        job_id: int,
        reason: str,
        *,
        worker: str | None = None,
        requeues: int | None = None,
    ) -> None:
        """The job failed for `reason` (as its `worker` reports, or as the bot decided)."""
        self.running.pop(job_id, None)
        failed = self.store.fail(job_id, reason, worker=worker, requeues=requeues)
        if failed is not None:
            self.events.publish(JobEnded(failed, None))
        self._queue_changed()

    async def _taken(self, entry: Running, message: Taken) -> None:
        """A worker took a job from the shared queue; a second attempt means the worker that
        had it stopped, and too many attempts fail the job."""
        job_id, restarts = entry.row.id, message.attempt - 1
        if restarts > self.max_requeues:
            self._failed(job_id, _stopped_too_often(restarts), requeues=restarts)
            await self.transport.cancel(job_id, message.worker_id)
            return
        said = None
        if restarts:
            said = notice(
                "A drawing worker stopped while drawing this; worker {worker} started it again.",
                worker=message.worker_id,
            )
        taken = self.store.taken(job_id, message.worker_id, requeues=restarts, notice=said)
        if taken is None:  # no longer running: the worker need not draw it
            del self.running[job_id]
            await self.transport.cancel(job_id, message.worker_id)
            return
        entry.worker, entry.step, entry.rate, entry.row = message.worker_id, 0, None, taken
        self.events.publish(JobStarting(entry.row, entry.worker, self._sharing(job_id)))

    def _worker_left(self, event: WorkerLeft) -> None:
        """The jobs the worker was drawing go back to the queue, or fail after too many tries;
        through a transport that keeps jobs, the next free worker takes them over."""
        for job_id, entry in list(self.running.items()):
            if entry.worker != event.worker_id:
                continue
            if self.transport.keeps_jobs:
                entry.worker, entry.rate = None, None
                self.events.publish(JobHandedOver(entry.row, event.worker_id))
                continue
            del self.running[job_id]
            job = self.store.job(job_id)
            if job is None or job.status != JobStatus.RUNNING:
                continue
            requeues = job.requeues + 1
            if requeues > self.max_requeues:
                self._failed(job.id, _stopped_too_often(requeues), requeues=requeues)
            else:
                self.store.requeue(
                    job.id,
                    notice(
                        "The drawing worker stopped unexpectedly; this job went back to the queue."
                    ),
                    requeues=requeues,
                )
        self._queue_changed()

    # -- the queue's estimates -------------------------------------------------------------
    def _queue_changed(self, added: int | None = None) -> None:
        order = self.store.queue_order()
        waiting = tuple(
            Waiting(job, position, eta)
            for position, (job, eta) in enumerate(
                zip(order, self.start_estimates(order), strict=True), start=1
            )
        )
        self.events.publish(QueueChanged(waiting, added))

    def start_estimates(self, order: list[JobRow]) -> list[float | None]:
        """Seconds until each queued job of `order` starts (None where a speed is unknown)."""
        free = max(self.places() - len(self.running), 0)
        return start_times(order, list(self.running.values()), free, self.store.recently_done)


def _stopped_too_often(count: int) -> str:
    return notice("The drawing worker stopped {count} times while drawing this.", count=count)


def _data(picture: GivenPicture) -> PictureData:
    """The bytes of the picture a job was given, as its StartJob carries them."""
    return PictureData(sha256=picture.image.sha256, png_b64=png_to_b64(picture.image.png))


def _timelapse(message: Finished) -> bytes | None:
    """The time-lapse a worker sent; a broken one is left out (and logged), not the card."""
    if message.timelapse_b64 is None:
        return None
    try:
        return b64_to_png(message.timelapse_b64)
    except ValueError:
        log.warning("job %s's time-lapse is not valid base64; leaving it out", message.job_id)
        return None
