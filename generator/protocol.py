"""The messages the bot and the worker process exchange: typed, versioned, one JSON object per line.

This module imports neither torch nor discord, so both sides can use it. Pictures travel as
base64 PNG; a line never holds a raw newline. Decoding validates every field with pydantic in
strict mode: a wrong type, a missing or unknown field, another version or an unknown message
type is refused with a `ProtocolError` that says which.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

PROTOCOL_VERSION = 3


class ProtocolError(ValueError):
    """A line that is not a message of this protocol version."""


@dataclass(frozen=True)
class Message:
    kind: ClassVar[str] = ""
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class StartJob(Message):
    """Bot -> worker: draw this. `init_latent` is a file of an earlier job's logits."""

    kind: ClassVar[str] = "start"
    job_id: int
    prompt: str
    seed: int
    iterations: int
    width: int
    height: int
    progress_every_s: float
    init_latent: str | None = None


@dataclass(frozen=True)
class CancelJob(Message):
    """Bot -> worker: stop this job after the current step and send what it has."""

    kind: ClassVar[str] = "cancel"
    job_id: int


@dataclass(frozen=True)
class Ready(Message):
    """Worker -> bot: models are loaded; jobs can come."""

    kind: ClassVar[str] = "ready"
    device: str


@dataclass(frozen=True)
class Heartbeat(Message):
    """Worker -> bot, every second or so, also while a job runs."""

    kind: ClassVar[str] = "heartbeat"
    busy_job_ids: list[int]


@dataclass(frozen=True)
class Preparing(Message):
    """Worker -> bot: a job waits for one-off work before its first step; `reason` says what."""

    kind: ClassVar[str] = "preparing"
    job_id: int
    reason: str


@dataclass(frozen=True)
class Progress(Message):
    """Worker -> bot: a job's latest picture, at most once per `progress_every_s`."""

    kind: ClassVar[str] = "progress"
    job_id: int
    step: int
    total: int
    loss: float
    iterations_per_second: float
    png_b64: str


@dataclass(frozen=True)
class Finished(Message):
    """Worker -> bot: the final picture (also for a cancelled job, with `cancelled` set)."""

    kind: ClassVar[str] = "finished"
    job_id: int
    steps: int
    seconds: float
    cancelled: bool
    png_b64: str
    latent: str


@dataclass(frozen=True)
class Failed(Message):
    """Worker -> bot: the job could not run; `reason` is safe to show to the requester."""

    kind: ClassVar[str] = "failed"
    job_id: int
    reason: str


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.kind: cls
    for cls in (StartJob, CancelJob, Ready, Heartbeat, Preparing, Progress, Finished, Failed)
}
_VALIDATORS: dict[str, TypeAdapter[Any]] = {
    kind: TypeAdapter(cls) for kind, cls in MESSAGE_TYPES.items()
}


def encode(message: Message) -> str:
    """One line of JSON, newline included."""
    payload = {"v": PROTOCOL_VERSION, "type": message.kind, **asdict(message)}
    return json.dumps(payload, separators=(",", ":")) + "\n"


def decode(line: str | bytes) -> Message:
    """Parse one line; ProtocolError for anything that is not a message of this version."""
    try:
        payload = json.loads(line)
    except ValueError as error:
        raise ProtocolError(f"not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ProtocolError("not a JSON object")
    if payload.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {payload.get('v')!r}, expected {PROTOCOL_VERSION}")
    kind = payload.pop("type", None)
    validator = _VALIDATORS.get(str(kind))
    if validator is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    del payload["v"]
    try:
        # JSON mode: strict about types (no "1" for 1) while taking an object for a message.
        message: Message = validator.validate_json(json.dumps(payload))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in error.errors()
        )
        raise ProtocolError(f"bad {kind} message: {problems}") from None
    return message


def png_to_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64_to_png(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
