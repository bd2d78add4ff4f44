"""How many CPU threads torch may use. Imports nothing heavy, so `doctor` can report it too.

torch's default is one thread per core. On a small machine shared with the bot (and with
anything else the operator runs) that oversubscribes the cores: with one of two cores busy
elsewhere, a tiny job ran 60 times slower with two threads than with one, because torch's
threads wait for each other at every operation. So the worker leaves cores free by default.
"""

from __future__ import annotations

import os

AUTO = 0
MAX_THREADS = 256
WORKER_RESERVED_CORES = 1  # for the bot's event loop, which must keep answering Discord


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def choose_threads(requested: int, *, reserve: int) -> int:
    """`requested` threads, or with AUTO every available core but `reserve` (at least one)."""
    if requested != AUTO:
        return requested
    return max(1, available_cores() - reserve)


def describe_threads(requested: int, *, reserve: int) -> str:
    """One line for `doctor` and logs: the count and where it comes from."""
    cores = available_cores()
    count = choose_threads(requested, reserve=reserve)
    if requested != AUTO:
        return f"{count} (set in the config; {cores} cores available)"
    return f"{count} (auto: {cores} cores available, {reserve} left to the bot)"
