"""How the scheduler reaches its workers, whatever carries the messages.

A transport starts or finds workers, hands them the jobs the scheduler dispatches, passes on
cancellations, and reports what the workers say together with who said it. Workers join when
their models are loaded and leave when they stop or are lost; the scheduler hears both and is
the only one that decides which job is dispatched when. `bot.workers.local` (a child process on
this host) is the default transport; `bot.workers.redis_streams` reaches any number of workers
through Redis, which hands a lost worker's jobs to another worker by itself (`keeps_jobs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from generator.contract.protocol import CheckMeaning, Message, StartJob


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    device: str
    places: int  # jobs it draws together
    host: str
    pid: int
    clip_models: tuple[str, ...] = ()  # the CLIP models it holds, the main one first


@dataclass(frozen=True)
class WorkerJoined:
    worker: WorkerInfo


@dataclass(frozen=True)
class WorkerLeft:
    """The worker stopped or was lost. Its jobs come back only if the transport `keeps_jobs`
    (another worker then takes them and says so with a `Taken` message)."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class FromWorker:
    worker_id: str
    message: Message


WorkerEvent = WorkerJoined | WorkerLeft | FromWorker


class WorkerTransport(Protocol):
    @property
    def keeps_jobs(self) -> bool:
        """Whether jobs outlive their worker and the bot (held in Redis) or die with them."""

    def start(self) -> None:
        """Begin starting or finding workers; each joins when it is ready."""

    async def stop(self, grace_s: float) -> None:
        """Let go of the workers; a worker of this process mid-step gets `grace_s` to finish
        the step."""

    async def held_jobs(self) -> set[int]:
        """After a restart: the jobs the transport still holds (dispatched, not finished).
        The scheduler asks once, first; no worker message is received before."""

    async def dispatch(self, job: StartJob) -> str | None:
        """Hand `job` to a worker; the worker's id if it is known now (else `Taken` says)."""

    async def cancel(self, job_id: int, worker_id: str | None) -> None:
        """Ask for a dispatched job to stop after its current step, wherever it is."""

    async def check(self, message: CheckMeaning) -> None:
        """Ask a ready worker to check a prompt by meaning; its `MeaningChecked` answer comes
        back through `receive` (or never, when no worker gets it: the asker waits so long)."""

    async def receive(self) -> WorkerEvent:
        """The next thing any worker said or did."""

    def workers(self) -> list[WorkerInfo]:
        """The workers ready now."""
