"""Process-wide torch switches, set once when a process that draws starts (the CLI, the worker,
the benchmark and the tests), never inside a factory."""

from __future__ import annotations

import torch


def configure_torch(threads: int) -> None:
    """Thread counts, and compile's fallback to eager where nothing can be compiled."""
    # The intra-op count is what competes for the cores; the inter-op pool's threads sleep
    # unless TorchScript or compiled graphs run branches in parallel.
    torch.set_num_threads(threads)
    # A machine that cannot compile (no C compiler, as in runtime-only containers) then runs the
    # networks uncompiled, with torch's warning in the log, instead of failing every job.
    torch._dynamo.config.suppress_errors = True
