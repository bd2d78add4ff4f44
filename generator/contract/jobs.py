"""A drawing as the bot decided it: one frozen, validated `JobSpec`.

Everything that decides what a job draws is here, decided once when the member asks: the
prompt, seed, iterations and size, the quality with the cutouts and CLIP models it came to, early
stopping, the time-lapse, how often the card shows progress, the pictures and how they are used,
the text encoder, the job it continues, rerolls or edits (and how it edits it), and how its prompt
and pictures are screened.
The bot stores the spec as it is and sends it unchanged in `StartJob`, so a setting an admin
changes later touches only later drawings; where a job is drawn is the scheduler's only choice.

Pictures are named here by their SHA-256 (`PictureRef`); their bytes travel beside the spec
(`PictureData`), since they are kept only for a while and are not what decides the drawing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generator.contract.edits import EditSpec
from generator.contract.encoders import TEXT_ENCODER_CHOICES
from generator.contract.fields import one_of
from generator.contract.images import (
    DEFAULT_IMAGE_WEIGHT,
    DEFAULT_INIT_STRENGTH,
    MAX_IMAGE_PROMPTS,
    MAX_IMAGE_WEIGHT,
    MAX_STORED_PNG_BYTES,
)
from generator.contract.prompts import MAX_PROMPT_CHARS
from generator.contract.quality import QUALITIES, job_cost
from generator.contract.screening import ScreeningSpec
from generator.contract.settings import (
    MAX_AUTO_STOP,
    MAX_CUTOUTS,
    MAX_ITERATIONS,
    MAX_SEED,
    MAX_SIDE,
    MIN_SIDE,
    SIDE_MULTIPLE,
    TILES,
)

MAX_JOB_CLIPS = 8
MAX_PROGRESS_EVERY_S = 3600.0
SHA256 = r"^[0-9a-f]{64}$"
FROZEN = ConfigDict(frozen=True, extra="forbid", strict=True)

Side = Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_MULTIPLE)]


class PictureRef(BaseModel):
    """A picture a job was given, by name and SHA-256 (of the bytes as given), with its weight
    as a picture to steer towards."""

    model_config = FROZEN

    name: Annotated[str, Field(max_length=200)]
    sha256: Annotated[str, Field(pattern=SHA256)]
    weight: Annotated[float, Field(ge=-MAX_IMAGE_WEIGHT, le=MAX_IMAGE_WEIGHT)] = (
        DEFAULT_IMAGE_WEIGHT
    )


class PictureData(BaseModel):
    """The bytes of a picture a spec names: `generator.intake`'s re-encoded PNG, in base64."""

    model_config = FROZEN

    sha256: Annotated[str, Field(pattern=SHA256)]
    png_b64: Annotated[
        str, Field(min_length=1, max_length=(MAX_STORED_PNG_BYTES + 2) // 3 * 4, repr=False)
    ]


class ParentJob(BaseModel):
    """The job a drawing came from: it continues it (from its final state), rerolls it (the
    same words and pictures, another seed) or edits its picture (`JobSpec.edit` says how)."""

    model_config = FROZEN

    id: Annotated[int, Field(ge=1)]
    how: Literal["continue", "reroll", "edit"]


class JobSpec(BaseModel):
    """What one job draws, and how its card follows it."""

    model_config = FROZEN

    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    iterations: Annotated[int, Field(ge=1, le=MAX_ITERATIONS)]
    width: Side
    height: Side
    quality: Annotated[str, one_of(QUALITIES)]
    cutouts: Annotated[int, Field(ge=1, le=MAX_CUTOUTS)]
    # By the names the workers hold them; the first is the main CLIP.
    clip_models: Annotated[tuple[str, ...], Field(min_length=1, max_length=MAX_JOB_CLIPS)]
    text_encoder: Annotated[str, one_of(TEXT_ENCODER_CHOICES[:-1])] = "clip"
    auto_stop: Annotated[int | None, Field(ge=1, le=MAX_AUTO_STOP)] = None
    timelapse: bool = False
    progress_every_s: Annotated[
        float, Field(ge=0, le=MAX_PROGRESS_EVERY_S, allow_inf_nan=False)
    ] = 10.0
    init_image: PictureRef | None = None
    init_strength: Annotated[float, Field(ge=0, le=1)] = DEFAULT_INIT_STRENGTH
    image_prompts: Annotated[tuple[PictureRef, ...], Field(max_length=MAX_IMAGE_PROMPTS)] = ()
    parent: ParentJob | None = None
    screening: ScreeningSpec = ScreeningSpec()
    edit: EditSpec | None = None
    tile: Annotated[str, one_of(TILES)] = ""  # the axes a seamless tile wraps around

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if len(set(self.clip_models)) != len(self.clip_models):
            raise ValueError("clip_models must name each model once")
        if self.continues is not None and self.init_image is not None:
            raise ValueError("a job continues an earlier one or starts from a picture, not both")
        if self.edit is not None and (self.continues is not None or self.init_image is not None):
            raise ValueError("an edit starts from its picture's tokens, not from another start")
        if self.parent is not None and (self.parent.how == "edit") != (self.edit is not None):
            raise ValueError("a job edits its parent (how: edit) exactly when it has an edit")
        return self

    @property
    def continues(self) -> int | None:
        """The job whose final state this one starts from."""
        return self.parent.id if self.parent is not None and self.parent.how == "continue" else None

    @property
    def image_use(self) -> str | None:
        """How it uses the pictures it was given: start, steer, both, or None without any."""
        if self.init_image is not None:
            return "both" if self.image_prompts else "start"
        return "steer" if self.image_prompts else None

    def pictures(self) -> tuple[PictureRef, ...]:
        """Every picture it names, each once."""
        named = (*((self.init_image,) if self.init_image else ()), *self.image_prompts)
        return tuple({ref.sha256: ref for ref in named}.values())

    def cost(self) -> float:
        """What one of its steps costs, in forward GFLOPs (`job_cost`)."""
        return job_cost(max(self.width, self.height), self.cutouts, self.clip_models)
