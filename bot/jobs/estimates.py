"""What the scheduler knows of the jobs being drawn, and when the waiting ones should start.

`start_times` simulates the workers' places: each frees when its job ends, and the next job in
fair order takes the place that frees first. A place's speed is counted in work per second (a
step's work by its size, cutouts and models: `JobSpec.cost`), so that a `best` job waiting takes
as much longer than a `draft` one as its steps cost more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.jobs.store import JobRow


@dataclass
class Running:
    """A job a worker is drawing: its row as started and its latest progress."""

    row: JobRow
    worker: str | None  # None: in the shared queue, not yet taken by a worker
    step: int = 0
    rate: float | None = None  # iterations per second, once the worker has reported


def start_times(
    order: list[JobRow],
    running: list[Running],
    free_places: int,
    recently_done: Callable[[], list[JobRow]],
) -> list[float | None]:
    """Seconds until each job of `order` starts, with `running` on the places and
    `free_places` free; None from the first job whose start no speed can tell (when nothing
    runs, the speed of the jobs `recently_done` says)."""
    frees: list[float] = [0.0] * free_places
    for entry in running:
        if not entry.rate:
            return [None] * len(order)
        frees.append((entry.row.spec.iterations - entry.step) / entry.rate)
    speeds = [e.rate * e.row.spec.cost() for e in running if e.rate]
    speed = sum(speeds) / len(speeds) if speeds else _speed_of(recently_done())
    estimates: list[float | None] = []
    for job in order:
        if speed is None or not frees:
            return estimates + [None] * (len(order) - len(estimates))
        frees.sort()
        begins = frees.pop(0)
        estimates.append(begins)
        frees.append(begins + job.spec.iterations * job.spec.cost() / speed)
    return estimates


def _speed_of(done: list[JobRow]) -> float | None:
    """Work per second of jobs that finished."""
    seconds = sum(job.seconds or 0 for job in done)
    return sum(job.steps * job.spec.cost() for job in done) / seconds if seconds else None
