"""Every drawing limit, declared once: name, type, range, default and the help text users see;
and the one rule that joins them: a server never goes past the operator's limits.

`GuildLimits` is what a server's admins set with /drawconfig (its defaults are a new server's
values, which the operator can change in `[defaults]`); `GuildSettings` adds the server's other
choices; `HardLimits` is the operator's `[limits]`, which no server can go past. The TOML config,
/drawconfig and /draw's option ranges, the stored guild settings and their validation all come
from these declarations. The outer ends of the ranges are the worker's own checks
(`generator.contract.settings`), so nothing the bot accepts is refused by the worker.

`effective` gives what a server may really use (its settings within the operator's limits), and
`clamp` lowers one asked-for value to a limit, saying so (`Lowered`): the desk, /drawconfig and
the config's validation all go through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, NamedTuple, TypeVar

import annotated_types
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from bot.i18n import N_, tr
from generator.contract.quality import MAX_PRESET_ITERATIONS, QUALITIES, cheaper, preset, within
from generator.contract.screening import MAX_SERVER_CONCEPTS, Concept
from generator.contract.settings import (
    AUTO_STOP_WINDOW,
    MAX_AUTO_STOP,
    MAX_ITERATIONS,
    MAX_SIDE,
    MIN_SIDE,
    SIDE_MULTIPLE,
)


class Span(NamedTuple):
    low: int
    high: int


ITERATIONS = Span(1, MAX_ITERATIONS)
SIDE = Span(MIN_SIDE, MAX_SIDE)
QUEUED_PER_MEMBER = Span(1, 1000)
QUEUED_TOTAL = Span(1, 100_000)
PROGRESS_INTERVAL_S = Span(2, 3600)
AUTO_STOP = Span(0, MAX_AUTO_STOP)

Iterations = Annotated[int, Field(ge=ITERATIONS.low, le=ITERATIONS.high)]
Side = Annotated[int, Field(ge=SIDE.low, le=SIDE.high, multiple_of=SIDE_MULTIPLE)]
QueuedPerMember = Annotated[int, Field(ge=QUEUED_PER_MEMBER.low, le=QUEUED_PER_MEMBER.high)]
QueuedTotal = Annotated[int, Field(ge=QUEUED_TOTAL.low, le=QUEUED_TOTAL.high)]
Interval = Annotated[
    float, Field(ge=PROGRESS_INTERVAL_S.low, le=PROGRESS_INTERVAL_S.high, allow_inf_nan=False)
]
AutoStop = Annotated[int, Field(ge=AUTO_STOP.low, le=AUTO_STOP.high)]


def _quality(value: str) -> str:
    preset(value)  # ValueError naming the choices
    return value


Quality = Annotated[str, AfterValidator(_quality)]

STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)
# A blocked or allowed term, as AutoMod takes keywords: at most 60 characters, and at most 1000
# of them in a list.
MAX_TERM_CHARS = 60
MAX_TERMS = 1000
Term = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TERM_CHARS)
]
Terms = Annotated[tuple[Term, ...], Field(max_length=MAX_TERMS)]


class GuildLimits(BaseModel):
    """A server's drawing limits; the defaults are a new server's."""

    model_config = STRICT

    default_iterations: Iterations = Field(
        1000, description="Iterations when a member does not say"
    )
    max_iterations: Iterations = Field(
        MAX_PRESET_ITERATIONS, description="Most iterations a member may ask for"
    )
    max_queued_per_user: QueuedPerMember = Field(
        2, description="Drawings one member may have waiting or running"
    )
    progress_interval_s: Interval = Field(
        10.0, description="Seconds between progress updates on a card"
    )
    max_size: Side = Field(512, description="Largest picture side in pixels")
    max_quality: Quality = Field(QUALITIES[-1], description="Highest quality members may ask for")
    auto_stop: AutoStop = Field(
        0,
        description=f"End drawings whose loss has not improved for this many {AUTO_STOP_WINDOW}-"
        "iteration windows (0: never)",
    )


class GuildSettings(GuildLimits):
    """A server's limits, the channels it draws in (none listed: every channel), whether
    members may give pictures with their drawings, whether drawings get a time-lapse when the
    member does not say, and its moderation: the terms its prompts may not say, whether its
    AutoMod keyword rules apply to prompts too, whether pictures are screened and prompts
    checked by meaning (None: as the operator's `[moderation]` says), the concepts it adds to
    the screening, whether a picture that crosses them is a spoiler in an age-restricted
    channel, and its moderation log channel (0: none)."""

    model_config = STRICT

    allowed_channels: tuple[int, ...] = ()
    image_inputs: bool = True
    timelapse: bool = False
    blocked_terms: Terms = ()
    automod: bool = True
    picture_screening: bool | None = None
    prompt_meaning: bool | None = None
    picture_concepts: Annotated[tuple[Concept, ...], Field(max_length=MAX_SERVER_CONCEPTS)] = ()
    spoiler_in_age_restricted: bool = False
    log_channel: int = 0


class HardLimits(BaseModel):
    """The operator's ceilings: admins can lower a server's limits, never raise them past
    these."""

    model_config = STRICT

    max_iterations: Iterations = Field(5000, description="Most iterations any server may allow")
    max_size: Side = Field(512, description="Largest picture side any server may allow")
    max_queued_per_user: QueuedPerMember = Field(
        5, description="Most drawings one member may have waiting or running on any server"
    )
    max_queued_total: QueuedTotal = Field(
        50, description="Most drawings waiting or running in all, on every server together"
    )
    min_progress_interval_s: Interval = Field(
        2.0, description="Shortest time between two progress pictures of a card"
    )
    max_quality: Quality = Field(QUALITIES[-1], description="Highest quality any server may allow")


def bounds(model: type[BaseModel], name: str) -> tuple[float, float] | None:
    """The range a field of `model` was declared with, if it has one."""
    low = high = None
    for constraint in model.model_fields[name].metadata:
        if isinstance(constraint, annotated_types.Ge):
            low = constraint.ge
        elif isinstance(constraint, annotated_types.Le):
            high = constraint.le
    return (float(low), float(high)) if low is not None and high is not None else None  # type: ignore[arg-type]


def describe(model: type[BaseModel], name: str) -> str:
    """A field's help text, as users see it."""
    return model.model_fields[name].description or name


# The qualities as members see them (/draw's choices, the card, /drawconfig, notices).
QUALITY_NAMES = {
    "draft": N_("draft"),
    "normal": N_("normal"),
    "better": N_("better"),
    "best": N_("best"),
}
# Which of a server's limits each of the operator's bounds, and how.
CEILINGS = ("max_iterations", "max_size", "max_queued_per_user", "max_quality")
FLOOR = ("progress_interval_s", "min_progress_interval_s")

BY_SERVER = N_("{name} lowered from {asked} to this server's maximum, {most}.")
BY_BOT = N_("{name} lowered from {asked} to the bot's limit, {most}.")
WITHIN = N_("{name} lowered from {asked} to {most} to stay within {limit}.")


@dataclass(frozen=True)
class Effective:
    """What a server may use now: its settings, within the operator's limits."""

    default_iterations: int
    max_iterations: int
    max_size: int
    max_quality: str
    max_queued_per_user: int
    progress_interval_s: float
    auto_stop: int


def effective(settings: GuildLimits, limits: HardLimits) -> Effective:
    most_iterations = min(settings.max_iterations, limits.max_iterations)
    return Effective(
        default_iterations=min(settings.default_iterations, most_iterations),
        max_iterations=most_iterations,
        max_size=min(settings.max_size, limits.max_size),
        max_quality=cheaper(settings.max_quality, limits.max_quality),
        max_queued_per_user=min(settings.max_queued_per_user, limits.max_queued_per_user),
        progress_interval_s=max(settings.progress_interval_s, limits.min_progress_interval_s),
        auto_stop=settings.auto_stop,
    )


Value = TypeVar("Value", int, float, str)
Settings = TypeVar("Settings", bound=GuildLimits)


@dataclass(frozen=True)
class Lowered:
    """A value asked for and the limit it was lowered to; `name` is what members call it (a
    message) or the option's own name; a quality is given by its name."""

    template: str  # BY_SERVER, BY_BOT or WITHIN
    name: str
    asked: int | float | str
    most: int | float | str
    limit: str = ""  # what WITHIN stays within

    def say(self, language: str) -> str:
        return tr(
            language,
            self.template,
            name=tr(language, self.name),
            asked=_shown(language, self.asked),
            most=_shown(language, self.most),
            limit=self.limit,
        )


def clamp(
    asked: Value, most: Value, *, name: str, template: str = BY_SERVER, limit: str = ""
) -> tuple[Value, Lowered | None]:
    """`asked`, or `most` when it goes past it (a quality: when it is dearer), with the notice
    that says so."""
    if isinstance(asked, str) and isinstance(most, str):
        over = not within(asked, most)
    else:
        over = asked > most
    if not over:
        return asked, None
    return most, Lowered(template, name, asked, most, limit)


def beyond_limits(values: Mapping[str, int | float | str], limits: HardLimits) -> list[Lowered]:
    """Which of a server's limits in `values` (by name) go past the operator's, each lowered to
    it."""
    found = (
        clamp(values[name], getattr(limits, name), name=name, template=BY_BOT)[1]
        for name in CEILINGS
        if name in values
    )
    return [lowered for lowered in found if lowered is not None]


def default_beyond_maximum(settings: GuildLimits) -> Lowered | None:
    """A server's default iterations lowered to its maximum, when it is above it."""
    return clamp(
        settings.default_iterations,
        settings.max_iterations,
        name="default_iterations",
        template=WITHIN,
        limit="max_iterations",
    )[1]


def applied(settings: Settings, lowered: list[Lowered]) -> Settings:
    """`settings` with each value `lowered` says."""
    return settings.model_copy(update={notice.name: notice.most for notice in lowered})


def _shown(language: str, value: int | float | str) -> str:
    if isinstance(value, str):
        return tr(language, QUALITY_NAMES.get(value, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
