"""What happens to jobs, as the scheduler tells it: one-way, to whoever listens.

The scheduler and the front desk publish; listeners (the job cards, the moderation log, the
heartbeat, the metrics) subscribe and never call back into them. Each job event holds the
job's row as it was when the event happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.jobs.store import JobRow
from bot.moderation.rules import Source
from bot.workers.transport import WorkerInfo

log = logging.getLogger("pseudo_dalle.events")


@dataclass(frozen=True)
class Waiting:
    """A queued job, its place in the fair order and when it should start (None: unknown)."""

    job: JobRow
    position: int
    starts_in_s: float | None


@dataclass(frozen=True)
class QueueChanged:
    """The queue's order or estimates changed; `added` is a job that just joined it."""

    waiting: tuple[Waiting, ...]
    added: int | None = None


@dataclass(frozen=True)
class JobStarting:
    """Dispatched: to `worker`, or (None) to the shared queue until a worker takes it."""

    job: JobRow
    worker: str | None
    sharing: tuple[int, ...]  # other jobs drawn on the same worker


@dataclass(frozen=True)
class JobPreparing:
    """Waiting for one-off work before its first step; `reason` (a code of
    `generator.contract.reasons`) says what."""

    job: JobRow
    reason: str
    sharing: tuple[int, ...]


@dataclass(frozen=True)
class JobProgress:
    """How far a job got, with its latest picture: None once a picture of it was withheld
    (`bot.jobs.screening`); `spoiler` when it may be shown only as one."""

    job: JobRow
    step: int
    total: int
    iterations_per_second: float
    png: bytes | None
    sharing: tuple[int, ...]
    spoiler: bool = False


@dataclass(frozen=True)
class JobEnded:
    """Done, cancelled or failed (the row's status says which), with the final picture if any
    and, for a job that asked for one, its time-lapse (animated WebP or GIF); neither where it
    was withheld (`timelapse_withheld` says the time-lapse was), `spoiler` where they may be
    shown only as spoilers."""

    job: JobRow
    png: bytes | None
    timelapse: bytes | None = None
    spoiler: bool = False
    timelapse_withheld: bool = False


@dataclass(frozen=True)
class PictureWithheld:
    """A picture crossed the job's screening (`crossed` says what it came too close to) where
    it may not be shown, so it was not; `first` for the first of its job. `data` is the
    picture, for a moderation log channel that may show it."""

    job: JobRow
    what: str  # preview, final or timelapse
    crossed: tuple[str, ...]
    data: bytes = field(repr=False)
    first: bool


@dataclass(frozen=True)
class JobHandedOver:
    """Its worker stopped; the next worker with a free place starts it again."""

    job: JobRow
    worker: str  # the worker that stopped


@dataclass(frozen=True)
class JobPaused:
    """The bot is stopping: the job starts again when the bot is back, or, when `continues`,
    its worker goes on drawing it and its card catches up then."""

    job: JobRow
    continues: bool = False


@dataclass(frozen=True)
class PromptRefused:
    """A member's prompt refused for what it says: `found` is what of it a rule of `source`
    refused (a term, or the concept a prompt came too close to in meaning)."""

    guild_id: int
    channel_id: int
    user_id: int
    prompt: str
    found: str
    source: Source


@dataclass(frozen=True)
class JobReported:
    """Member `reporter` reported the job's picture to the server's moderators."""

    job: JobRow
    reporter: int


@dataclass(frozen=True)
class WorkersChanged:
    """A worker joined or left; `workers` are those ready now."""

    workers: tuple[WorkerInfo, ...]


JobEvent = (
    QueueChanged
    | JobStarting
    | JobPreparing
    | JobProgress
    | JobEnded
    | JobHandedOver
    | JobPaused
    | PictureWithheld
    | PromptRefused
    | JobReported
    | WorkersChanged
)
Listener = Callable[[JobEvent], None]


class JobEvents:
    """Listeners of job events. A listener must not block; one that raises is logged and the
    others still hear the event."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, event: JobEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a listener failed on %s", type(event).__name__)
