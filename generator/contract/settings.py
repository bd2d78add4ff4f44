"""The settings of a run, as one frozen, validated dataclass, and the per-job request."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from generator.contract.edits import EditSpec
from generator.contract.errors import SettingsError
from generator.contract.images import (
    DEFAULT_INIT_STRENGTH,
    MAX_IMAGE_PROMPTS,
    ImageInput,
    check_strength,
)
from generator.contract.prompts import WeightedPrompt, parse_prompts
from generator.contract.weights import clip_label

MIN_SIDE = 64
MAX_SIDE = 1024
SIDE_MULTIPLE = 8  # the decoder upsamples each token 8x
MAX_SEED = 2**32 - 1
MAX_ITERATIONS = 100_000
MAX_CUTOUTS = 256
# fp32 is the plain path; bf16 and fp16 run the forward passes in that dtype (the loss and the
# Adam update stay fp32). "auto" is a choice for users, resolved per device before drawing.
PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_CHOICES = ("auto", *PRECISIONS)
# What the Gumbel-softmax normalises over; generator/method/latent.py says what each means.
RELAXATIONS = ("codebook", "positions")
# What turns a job's prompt into the target embedding (generator.models.text_encoders).
TEXT_ENCODERS = ("clip", "multilingual")
# How the cutouts' sizes change over a run: "coarse-to-fine" starts around the whole picture
# (cut_size_max) and ends with small crops (cut_size_min); "fixed" keeps the mix around
# cut_size_mean throughout.
CUT_SCHEDULES = ("coarse-to-fine", "fixed")
# Seamless tiles: the axes along which the picture wraps around (its left edge continues its
# right, its top its bottom); "" draws an ordinary picture.
TILES = ("", "x", "y", "xy")
LR_DROP_FACTOR = 10.0  # the learning rate is divided by this at `lr_drop` of the run
DEFAULT_LR_DROP = 0.75
AUTO_STOP_WINDOW = 10  # steps whose mean loss auto-stop compares
MAX_AUTO_STOP = 1000


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise SettingsError(message)


def check_side(name: str, value: int) -> None:
    _require(
        isinstance(value, int) and MIN_SIDE <= value <= MAX_SIDE and value % SIDE_MULTIPLE == 0,
        f"{name} must be a multiple of {SIDE_MULTIPLE} from {MIN_SIDE} to {MAX_SIDE}, got {value}",
    )


@dataclass(frozen=True)
class DrawSettings:
    """How images are optimised. Every job stepped together shares these.

    The defaults follow the reference notebooks: 512x512 (64x64 tokens), 32 cutouts sized
    around 0.8 of the side, Adam at 0.1, Gumbel-softmax at temperature 1.
    """

    width: int = 512
    height: int = 512
    cutouts: int = 32
    cut_size_mean: float = 0.8
    cut_size_std: float = 0.3
    cut_size_min: float = 0.5
    cut_size_max: float = 0.98
    rotation_degrees: float = 0.0
    flip: bool = False
    noise_std: float = 0.0
    lr: float = 0.1
    temperature: float = 1.0
    temperature_end: float | None = None
    init_scale: float = 1.0
    lr_drop: float | None = DEFAULT_LR_DROP  # None: the learning rate stays as it is
    cut_schedule: str = CUT_SCHEDULES[0]
    precision: str = "fp32"
    checkpointing: bool = False
    compile: bool = False
    relaxation: str = RELAXATIONS[0]
    tile: str = ""  # TILES: the axes the picture wraps around, for seamless tiles
    # The loaded CLIP models that judge, by the name or file they were loaded by; empty: every
    # loaded model. A worker holding several draws each job with the ones its quality names.
    clip_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_side("width", self.width)
        check_side("height", self.height)
        _require(
            isinstance(self.cutouts, int) and 1 <= self.cutouts <= MAX_CUTOUTS,
            f"cutouts must be from 1 to {MAX_CUTOUTS}, got {self.cutouts}",
        )
        _require(
            0 < self.cut_size_min <= self.cut_size_max <= 1,
            "cut sizes need 0 < cut_size_min <= cut_size_max <= 1, "
            f"got {self.cut_size_min} and {self.cut_size_max}",
        )
        _require(self.cut_size_std >= 0, f"cut_size_std must be >= 0, got {self.cut_size_std}")
        _require(
            0 <= self.rotation_degrees <= 45,
            f"rotation_degrees must be from 0 to 45, got {self.rotation_degrees}",
        )
        _require(0 <= self.noise_std <= 1, f"noise_std must be from 0 to 1, got {self.noise_std}")
        _require(
            math.isfinite(self.lr) and 0 <= self.lr <= 10, f"lr must be in [0, 10], got {self.lr}"
        )
        _require(
            self.lr_drop is None or 0 < self.lr_drop < 1,
            f"lr_drop must be a fraction of the run between 0 and 1, got {self.lr_drop}",
        )
        _require(
            self.cut_schedule in CUT_SCHEDULES,
            f"cut_schedule must be one of {', '.join(CUT_SCHEDULES)}, got {self.cut_schedule!r}",
        )
        for name in ("temperature", "temperature_end"):
            value = getattr(self, name)
            _require(
                value is None or (math.isfinite(value) and 0.01 <= value <= 100),
                f"{name} must be from 0.01 to 100, got {value}",
            )
        _require(
            math.isfinite(self.init_scale) and 0 <= self.init_scale <= 100,
            f"init_scale must be from 0 to 100, got {self.init_scale}",
        )
        _require(
            self.relaxation in RELAXATIONS,
            f"relaxation must be one of {', '.join(RELAXATIONS)}, got {self.relaxation!r}",
        )
        _require(
            all(isinstance(name, str) and name for name in self.clip_models)
            and len(set(self.clip_models)) == len(self.clip_models),
            f"clip_models must name distinct models, got {self.clip_models!r}",
        )
        _require(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        _require(self.tile in TILES, f"tile must be x, y, xy or nothing, got {self.tile!r}")

    @property
    def token_grid(self) -> tuple[int, int]:
        """(rows, columns) of codebook tokens: the decoder upsamples 8x."""
        return self.height // 8, self.width // 8

    def temperature_at(self, step: int, total: int) -> float:
        """Gumbel-softmax temperature for 0-based `step` of `total`, geometric if scheduled."""
        if self.temperature_end is None or total <= 1:
            return self.temperature
        fraction = step / (total - 1)
        return float(self.temperature * (self.temperature_end / self.temperature) ** fraction)

    def lr_at(self, step: int, total: int) -> float:
        """Adam's learning rate for 0-based `step` of `total`: divided by `LR_DROP_FACTOR`
        from `lr_drop` of the run on."""
        if self.lr_drop is not None and step >= int(self.lr_drop * total):
            return self.lr / LR_DROP_FACTOR
        return self.lr

    def cut_size_at(self, step: int, total: int) -> float:
        """The cutouts' mean size (a fraction of the shorter side) at 0-based `step`."""
        if self.cut_schedule == "fixed" or total <= 1:
            return self.cut_size_mean
        fraction = step / (total - 1)
        return self.cut_size_max + (self.cut_size_min - self.cut_size_max) * fraction

    def to_json(self) -> str:
        """The settings as JSON, each CLIP model by its label (a file by its file's name)."""
        fields = asdict(self)
        fields["clip_models"] = [clip_label(name) for name in self.clip_models]
        return json.dumps(fields, sort_keys=True)


@dataclass(frozen=True)
class Job:
    """One picture to draw: what, with which seed, for how many iterations.

    `init_logits` continues an earlier result (its `DrawResult.logits`) instead of starting from
    random tokens. `init_image` starts from a picture's tokens instead, held as firmly as
    `init_strength` says (0: the first steps may leave them, 1: they hold through the run);
    `init_tokens` (1, h, w) start from a token grid itself (an edit, `edit` says which), held
    the same way, except the cells where `fresh` (1, h, w) bool is True, which start from
    random tokens and are not pulled back; with `frozen`, every other cell is kept exactly (a
    region edit);
    `image_prompts` steer towards pictures, each with its weight, next to the text's parts.
    The prompt may be empty when there is an image prompt: the pictures alone steer.
    With `auto_stop` N, the loss is averaged over windows of `AUTO_STOP_WINDOW` steps and the
    run ends when N windows in a row have not beaten the best window so far.
    """

    prompt: str
    seed: int
    iterations: int
    init_logits: Any = field(default=None, compare=False, repr=False)
    text_encoder: str = "clip"  # "clip" or "multilingual" (generator.models.text_encoders)
    init_image: ImageInput | None = None
    init_strength: float = DEFAULT_INIT_STRENGTH
    image_prompts: tuple[ImageInput, ...] = ()
    auto_stop: int | None = None  # stop when this many loss windows in a row beat no earlier one
    init_tokens: Any = field(default=None, compare=False, repr=False)
    fresh: Any = field(default=None, compare=False, repr=False)
    frozen: bool = False
    edit: EditSpec | None = None  # what the PNG records of the edit
    prompts: tuple[WeightedPrompt, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _require(
            isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED,
            f"seed must be from 0 to {MAX_SEED}, got {self.seed}",
        )
        _require(
            isinstance(self.iterations, int) and 1 <= self.iterations <= MAX_ITERATIONS,
            f"iterations must be from 1 to {MAX_ITERATIONS}, got {self.iterations}",
        )
        _require(
            self.text_encoder in TEXT_ENCODERS,
            f"text encoder must be one of {', '.join(TEXT_ENCODERS)}, got {self.text_encoder!r}",
        )
        check_strength(self.init_strength)
        _require(
            self.auto_stop is None
            or (isinstance(self.auto_stop, int) and 1 <= self.auto_stop <= MAX_AUTO_STOP),
            f"auto_stop must be from 1 to {MAX_AUTO_STOP} windows, got {self.auto_stop}",
        )
        _require(
            len(self.image_prompts) <= MAX_IMAGE_PROMPTS,
            f"at most {MAX_IMAGE_PROMPTS} image prompts, got {len(self.image_prompts)}",
        )
        starts = [self.init_image, self.init_logits, self.init_tokens]
        _require(
            sum(start is not None for start in starts) <= 1,
            "a job starts from a picture, an earlier result or a token grid, not two of them",
        )
        _require(
            self.fresh is None or self.init_tokens is not None,
            "cells to start afresh need the tokens of the others",
        )
        _require(not self.frozen or self.fresh is not None, "a region edit needs its region")
        _require(
            not self.image_prompts
            or any(image.weight > 0 for image in self.image_prompts)
            or bool(self.prompt.strip()),
            "an image prompt alone needs a positive weight",
        )
        text_only = not self.image_prompts or self.prompt.strip()
        object.__setattr__(self, "prompts", parse_prompts(self.prompt) if text_only else ())


DEFAULTS = DrawSettings()  # every default above, for the CLI's options and the worker's settings
