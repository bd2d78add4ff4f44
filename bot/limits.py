"""Every drawing limit, declared once: name, type, range, default and the help text users see.

`GuildLimits` is what a server's admins set with /drawconfig (its defaults are a new server's
values, which the operator can change in `[defaults]`); `HardLimits` is the operator's
`[limits]`, which no server can go past. The TOML config, /drawconfig and /draw's option ranges,
the stored guild settings and their validation all come from these declarations. The outer
ends of the ranges are the worker's own checks (`generator.contract.settings`), so nothing the bot
accepts is refused by the worker.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

import annotated_types
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from generator.contract.quality import MAX_PRESET_ITERATIONS, QUALITIES, preset
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
