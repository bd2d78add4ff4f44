"""Process-wide torch switches, set once when a process that draws starts (the CLI, the worker,
the benchmark and the tests), never inside a factory."""

from __future__ import annotations

import contextlib

import torch


def configure_torch(threads: int) -> None:
    """Thread counts, and compile's fallback to eager where nothing can be compiled."""
    torch.set_num_threads(threads)
    # Inter-op threads only run independent graph branches in parallel (TorchScript, compile):
    # nothing here benefits, and each one is one more thread competing for the cores. torch
    # fixes the count at the first parallel work, so a second call in one process keeps the
    # first setting.
    if torch.get_num_interop_threads() != 1:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    # A machine that cannot compile (no C compiler, as in runtime-only containers) then runs the
    # networks uncompiled, with torch's warning in the log, instead of failing every job.
    torch._dynamo.config.suppress_errors = True
