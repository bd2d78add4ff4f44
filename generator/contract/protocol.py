"""The messages the bot and the worker process exchange: typed, versioned, one JSON object per line.

This module imports neither torch nor discord, so both sides can use it. Pictures travel as
base64 PNG; a line never holds a raw newline. Decoding validates every field with pydantic in
strict mode: a wrong type, a missing or unknown field, another version or an unknown message
type is refused with a `ProtocolError` that says which.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from generator.contract.encoders import DEFAULT_MULTILINGUAL, TEXT_ENCODER_CHOICES
from generator.contract.fields import one_of
from generator.contract.images import MAX_IMAGE_PROMPTS
from generator.contract.jobs import JobSpec, PictureData
from generator.contract.prompts import MAX_PROMPT_CHARS
from generator.contract.quality import MAX_PRESET_CUTOUTS
from generator.contract.reasons import check_values
from generator.contract.screening import Scores
from generator.contract.settings import DEFAULTS, MAX_CUTOUTS, PRECISION_CHOICES, RELAXATIONS
from generator.contract.threads import AUTO, MAX_THREADS
from generator.contract.timelapse import MAX_TIMELAPSE_BYTES
from generator.contract.weights import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_DECODER_URL,
    DEFAULT_ENCODER_URL,
)

PROTOCOL_VERSION = 10
MAX_BATCH = 16
MAX_MEMORY_GB = 100_000


class ProtocolError(ValueError):
    """A line that is not a message of this protocol version."""


class ModelChoice(BaseModel):
    """Which networks the worker loads, and from where."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    clip: str = Field(
        DEFAULT_CLIP_MODEL, description="the main CLIP: a model name or checkpoint file"
    )
    extra_clips: list[str] = Field(
        default_factory=list,
        description="more CLIP models to hold for the qualities that use several",
    )
    decoder: str = Field(DEFAULT_DECODER_URL, description="dVAE decoder URL or file")
    encoder: str = Field(
        DEFAULT_ENCODER_URL,
        description="dVAE encoder URL or file, loaded for the first job that starts from a "
        "picture, zooms out or upscales creatively",
    )
    cache_dir: str = Field("", description="where downloaded weights live; empty: the default")
    offline: bool = Field(False, description="never download; cached or local files only")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    text_encoder: Annotated[str, one_of(TEXT_ENCODER_CHOICES)] = Field(
        "clip", description="what reads prompts: clip, multilingual, or auto (by the prompt)"
    )
    multilingual_model: str = Field(
        DEFAULT_MULTILINGUAL,
        description="multilingual encoder name, or a sentence-transformers or M-CLIP folder",
    )

    def clip_models(self) -> list[str]:
        """Every CLIP model to load, the main one first, each once."""
        return list(dict.fromkeys((self.clip, *self.extra_clips)))


class WorkerOptions(BaseModel):
    """How the worker draws; every job it takes shares these."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    cutouts: Annotated[int, Field(ge=1, le=MAX_CUTOUTS)] = Field(
        MAX_PRESET_CUTOUTS, description="most crops CLIP sees per step of one job"
    )
    precision: Annotated[str, one_of(PRECISION_CHOICES)] = Field(
        "auto", description="fp32, bf16, fp16 or auto"
    )
    checkpointing: bool = Field(False, description="recompute activations: less memory")
    compile: bool = Field(False, description="torch.compile the networks")
    max_batch: Annotated[int, Field(ge=1, le=MAX_BATCH)] = Field(
        1, description="jobs drawn together"
    )
    relaxation: Annotated[str, one_of(RELAXATIONS)] = Field(
        DEFAULTS.relaxation, description="what the Gumbel-softmax normalises over"
    )
    cuda_graphs: bool = Field(True, description="replay each step as a CUDA graph")
    threads: Annotated[int, Field(ge=AUTO, le=MAX_THREADS)] = Field(
        AUTO, description="torch CPU threads; 0: every available core but one"
    )
    memory_limit_gb: Annotated[float, Field(ge=0, le=MAX_MEMORY_GB, allow_inf_nan=False)] = Field(
        0.0,
        description="GiB for the models and the jobs drawn together; 0: the GPU's memory "
        "(no limit on a CPU)",
    )


class SharedSettings(BaseModel):
    """What the bot publishes for workers that reach it through Redis: the models and options
    a `Configure` message carries, without a worker id (each such worker names itself)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    models: ModelChoice
    options: WorkerOptions


class WorkerPresence(BaseModel):
    """What a worker reached through Redis says about itself, renewed every few seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: str
    device: str
    places: int
    host: str
    pid: int
    busy: list[int]
    clip_models: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Message:
    kind: ClassVar[str] = ""
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class Configure(Message):
    """Bot -> worker, first and once: who it is, what to load and how to draw."""

    kind: ClassVar[str] = "configure"
    worker_id: str
    models: ModelChoice
    options: WorkerOptions


@dataclass(frozen=True)
class StartJob(Message):
    """Bot -> worker: draw job `job_id` as `spec` says. `init_state` is the continue state of
    the job it continues (`generator.method.latent.pack_state`, base64); `pictures` are the
    bytes of the pictures the spec names."""

    kind: ClassVar[str] = "start"
    job_id: int
    spec: JobSpec
    init_state: str | None = None
    pictures: Annotated[list[PictureData], Field(max_length=MAX_IMAGE_PROMPTS + 1)] = field(
        default_factory=list
    )


@dataclass(frozen=True)
class CancelJob(Message):
    """Bot -> worker: stop this job after the current step and send what it has."""

    kind: ClassVar[str] = "cancel"
    job_id: int


@dataclass(frozen=True)
class Ready(Message):
    """Worker -> bot: models are loaded; up to `places` jobs can come. `clip_models`: the CLIP
    models it holds, the main one first, by the names it was configured with."""

    kind: ClassVar[str] = "ready"
    worker_id: str
    device: str
    places: int
    host: str
    pid: int
    clip_models: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Heartbeat(Message):
    """Worker -> bot, every second or so, also while a job runs."""

    kind: ClassVar[str] = "heartbeat"
    worker_id: str
    busy_job_ids: list[int]


@dataclass(frozen=True)
class Taken(Message):
    """Worker -> bot: this worker took the job from the shared queue; `attempt` counts the
    deliveries (2 and up: a worker that had it stopped, and this one starts it again)."""

    kind: ClassVar[str] = "taken"
    job_id: int
    worker_id: str
    attempt: int


@dataclass(frozen=True)
class Preparing(Message):
    """Worker -> bot: a job waits for one-off work before its first step; `reason` (a code of
    `generator.contract.reasons`) says what."""

    kind: ClassVar[str] = "preparing"
    job_id: int
    reason: str

    def __post_init__(self) -> None:
        check_values(self.reason, {})


@dataclass(frozen=True)
class Progress(Message):
    """Worker -> bot: a job's latest picture, at most once per `progress_every_s`, with what
    screening said of it (None when the job's spec does not screen pictures, or when screening
    failed: `generator.contract.screening`)."""

    kind: ClassVar[str] = "progress"
    job_id: int
    step: int
    total: int
    loss: float
    iterations_per_second: float
    png_b64: str
    screening: Scores | None = None


@dataclass(frozen=True)
class Finished(Message):
    """Worker -> bot: the final picture (also for a cancelled job, with `cancelled` set), and
    what Continue needs to go on from it (`generator.method.latent.pack_state`, a few KB).
    For a job that asked for one, `timelapse_b64` is its time-lapse, an animated WebP (GIF
    where the worker's Pillow has no WebP writer; `generator.media.animation`). `screening`
    is what screening said of the final picture, `timelapse_screening` of the time-lapse's
    frames (each concept's highest score); None as for `Progress`."""

    kind: ClassVar[str] = "finished"
    job_id: int
    steps: int
    seconds: float
    cancelled: bool
    png_b64: str
    continue_state: str
    timelapse_b64: Annotated[str | None, Field(max_length=(MAX_TIMELAPSE_BYTES + 2) // 3 * 4)] = (
        None
    )
    screening: Scores | None = None
    timelapse_screening: Scores | None = None


@dataclass(frozen=True)
class Failed(Message):
    """Worker -> bot: the job could not run, for `reason`, a code of `generator.contract.reasons`
    whose fields `values` fill; the bot says it in the requester's language."""

    kind: ClassVar[str] = "failed"
    job_id: int
    reason: str
    values: dict[str, str | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_values(self.reason, self.values)


@dataclass(frozen=True)
class CheckMeaning(Message):
    """Bot -> worker, before a job whose spec checks its prompt by meaning is queued: embed the
    prompt's positive parts with `text_encoder` into the main CLIP's text space and say whether
    one comes too close to an unsafe concept (`generator.contract.screening`)."""

    kind: ClassVar[str] = "check_meaning"
    check_id: int
    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    text_encoder: Annotated[str, one_of(TEXT_ENCODER_CHOICES[:-1])]


@dataclass(frozen=True)
class MeaningChecked(Message):
    """Worker -> bot: the answer to `CheckMeaning` `check_id`: the concept the prompt came too
    close to (None: none), or `checked` False when it could not tell (no screener, a prompt its
    encoder cannot read), which the bot takes as a refusal: the check fails closed."""

    kind: ClassVar[str] = "meaning_checked"
    check_id: int
    checked: bool
    concept: str | None = None


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.kind: cls
    for cls in (
        Configure,
        StartJob,
        CancelJob,
        Ready,
        Heartbeat,
        Taken,
        Preparing,
        Progress,
        Finished,
        Failed,
        CheckMeaning,
        MeaningChecked,
    )
}
_VALIDATORS: dict[str, TypeAdapter[Any]] = {
    kind: TypeAdapter(cls) for kind, cls in MESSAGE_TYPES.items()
}


def encode(message: Message) -> str:
    """One line of JSON, newline included."""
    fields = _VALIDATORS[message.kind].dump_python(message, mode="json")
    payload = {"v": PROTOCOL_VERSION, "type": message.kind, **fields}
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
    """ValueError (binascii.Error) when `text` is not valid base64."""
    return base64.b64decode(text.encode("ascii"), validate=True)
