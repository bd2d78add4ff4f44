"""How the scheduler reaches its workers, whatever carries the messages.

A transport starts and watches workers, delivers `StartJob` and `CancelJob` to the worker the
scheduler names, and reports what the workers say together with who said it. Workers join when
their models are loaded and leave when they stop or are lost; the scheduler hears both and is
the only one that decides which job goes where. `bot.local_worker` (a child process on this
host) is the default transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from generator.protocol import CancelJob, Message, StartJob


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    device: str
    places: int  # jobs it draws together
    host: str
    pid: int


@dataclass(frozen=True)
class WorkerJoined:
    worker: WorkerInfo


@dataclass(frozen=True)
class WorkerLeft:
    """The worker stopped or was lost; whatever it was drawing will not come back."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class FromWorker:
    worker_id: str
    message: Message


WorkerEvent = WorkerJoined | WorkerLeft | FromWorker


class WorkerTransport(Protocol):
    def start(self) -> None:
        """Begin starting or finding workers; each joins when it is ready."""

    async def stop(self, grace_s: float) -> None:
        """Let go of every worker; a worker mid-step gets `grace_s` to finish the step."""

    async def send(self, worker_id: str, message: StartJob | CancelJob) -> None:
        """Deliver `message`; a worker that is gone is reported by `receive`, not here."""

    async def receive(self) -> WorkerEvent:
        """The next thing any worker said or did."""

    def workers(self) -> list[WorkerInfo]:
        """The workers ready now."""
