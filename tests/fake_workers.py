"""A worker transport for bot tests that draw nothing: workers join, report and leave when the
test says, so refusals, limits, cards, buttons, the queue and restarts are tested without a
torch worker and without "long enough" iteration counts.

It is handed to the launcher's own `assemble` in place of `LocalWorker` or `RedisWorkers`, so
everything above the transport is the bot users run.
"""

from __future__ import annotations

import asyncio
import base64
import io
from dataclasses import dataclass, field

from PIL import Image

from bot.workers.transport import FromWorker, WorkerEvent, WorkerInfo, WorkerJoined, WorkerLeft
from generator.contract.protocol import (
    CheckMeaning,
    Failed,
    Finished,
    MeaningChecked,
    Message,
    Preparing,
    Progress,
    StartJob,
    Taken,
    png_to_b64,
)
from generator.contract.screening import Scores, ScreeningSpec


class Clean:
    """Scores of 0 for every concept of the job: a picture that may go anywhere."""


CLEAN = Clean()


def png(side: int = 8, colour: tuple[int, int, int] = (40, 90, 200)) -> bytes:
    """A small picture, as a worker would send."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Dispatched:
    """A job the scheduler handed over, and to whom (None: to the shared queue)."""

    job: StartJob
    worker: str | None


@dataclass
class FakeWorkers:
    """A `WorkerTransport` whose workers are the test's puppets."""

    keeps_jobs: bool = False
    held: set[int] = field(default_factory=set)  # what `held_jobs` answers after a restart
    dispatched: dict[int, Dispatched] = field(default_factory=dict)
    cancelled: list[tuple[int, str | None]] = field(default_factory=list)
    started: bool = False
    stopped: bool = False
    # The prompt checks asked for, and how the puppets answer them: by the concept a prompt
    # containing a key crosses ("" for none), or not at all while `meaning_silent`.
    checks: list[CheckMeaning] = field(default_factory=list)
    unsafe: dict[str, str] = field(default_factory=dict)
    meaning_silent: bool = False
    _events: asyncio.Queue[WorkerEvent] = field(default_factory=asyncio.Queue)
    _ready: dict[str, WorkerInfo] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- the transport -------------------------------------------------------------------------
    def start(self) -> None:
        self.started = True

    async def stop(self, grace_s: float) -> None:
        self.stopped = True

    async def held_jobs(self) -> set[int]:
        return set(self.held)

    async def dispatch(self, job: StartJob) -> str | None:
        worker = None if self.keeps_jobs else next(iter(self._ready), None)
        self.dispatched[job.job_id] = Dispatched(job, worker)
        self._changed.set()
        return worker

    async def cancel(self, job_id: int, worker_id: str | None) -> None:
        self.cancelled.append((job_id, worker_id))
        self._changed.set()

    async def check(self, message: CheckMeaning) -> None:
        self.checks.append(message)
        if self.meaning_silent or not self._ready:
            return
        found = [concept for key, concept in self.unsafe.items() if key in message.prompt]
        answer = MeaningChecked(message.check_id, checked=True, concept=found[0] if found else None)
        self.say(answer, next(iter(self._ready)))

    async def receive(self) -> WorkerEvent:
        return await self._events.get()

    def workers(self) -> list[WorkerInfo]:
        return list(self._ready.values())

    # -- what the test makes the workers do ----------------------------------------------------
    def join(
        self,
        worker_id: str = "fake",
        *,
        places: int = 1,
        clip_models: tuple[str, ...] = ("ViT-B/32",),
        device: str = "cpu",
    ) -> WorkerInfo:
        """A worker becomes ready, holding `clip_models`."""
        info = WorkerInfo(worker_id, device, places, "test-host", 4242, clip_models)
        self._ready[worker_id] = info
        self._events.put_nowait(WorkerJoined(info))
        return info

    def leave(self, worker_id: str = "fake", reason: str = "exit status -9") -> None:
        del self._ready[worker_id]
        self._events.put_nowait(WorkerLeft(worker_id, reason))

    def say(self, message: Message, worker_id: str = "fake") -> None:
        self._events.put_nowait(FromWorker(worker_id, message))

    async def next_job(self, job_id: int, timeout: float = 10) -> StartJob:
        """The StartJob the scheduler sends for `job_id`, once it has."""

        async def wait() -> StartJob:
            while job_id not in self.dispatched:
                self._changed.clear()
                await self._changed.wait()
            return self.dispatched[job_id].job

        return await asyncio.wait_for(wait(), timeout)

    async def was_cancelled(self, job_id: int, timeout: float = 10) -> None:
        async def wait() -> None:
            while all(cancelled != job_id for cancelled, _ in self.cancelled):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def take(self, job_id: int, worker_id: str = "fake", attempt: int = 1) -> None:
        self.say(Taken(job_id, worker_id, attempt), worker_id)

    def prepare(self, job_id: int, reason: str, worker_id: str = "fake") -> None:
        self.say(Preparing(job_id, reason), worker_id)

    def scores(self, job_id: int, *, crossing: float = 0.0, learned: float | None = None) -> Scores:
        """What a worker's screening says of a picture of `job_id`: `crossing` for every one of
        its concepts (0: far from all of them; 1: as close as can be)."""
        dispatched = self.dispatched.get(job_id)
        screening = dispatched.job.spec.screening if dispatched else ScreeningSpec()
        return Scores(concepts=(crossing,) * len(screening.picture_concepts()), learned=learned)

    def _screening(self, job_id: int, screening: Scores | Clean | None) -> Scores | None:
        return self.scores(job_id) if isinstance(screening, Clean) else screening

    def progress(
        self,
        job_id: int,
        step: int,
        total: int,
        *,
        rate: float = 5.0,
        worker_id: str = "fake",
        screening: Scores | Clean | None = CLEAN,
        picture: bytes | None = None,
    ) -> None:
        data = png_to_b64(picture or png())
        scores = self._screening(job_id, screening)
        self.say(Progress(job_id, step, total, 0.5, rate, data, scores), worker_id)

    def finish(
        self,
        job_id: int,
        steps: int,
        *,
        seconds: float = 2.0,
        cancelled: bool = False,
        timelapse: bytes | None = None,
        worker_id: str = "fake",
        screening: Scores | Clean | None = CLEAN,
        timelapse_screening: Scores | Clean | None = CLEAN,
        picture: bytes | None = None,
        state: str | None = None,
    ) -> None:
        """The job ends with a picture and a continue state (a stand-in unless `state` is
        given); `screening` is what the worker's screening says of the picture,
        `timelapse_screening` of the time-lapse."""
        state = state or base64.b64encode(f"state of job {job_id}".encode()).decode("ascii")
        animation = png_to_b64(timelapse) if timelapse is not None else None
        message = Finished(
            job_id,
            steps,
            seconds,
            cancelled,
            png_to_b64(picture or png()),
            state,
            animation,
            self._screening(job_id, screening),
            self._screening(job_id, timelapse_screening) if timelapse is not None else None,
        )
        self.say(message, worker_id)

    def fail(
        self,
        job_id: int,
        reason: str,
        values: dict[str, str | int] | None = None,
        worker_id: str = "fake",
    ) -> None:
        self.say(Failed(job_id, reason, values or {}), worker_id)
