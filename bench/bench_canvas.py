"""What each edit of a picture costs (issue 32): time a step, memory, and what it sets up once,
against an ordinary drawing at the same size.

A source picture's tokens (random: speed does not depend on them) are edited as the worker
edits them (`generator.method.edits.edit_job`, `generator.contract.canvas`,
`generator.method.canvas`: a zoom out and Upscale (Creative), whose tokens come from the
encoder); each job is stepped by the engine at the default quality's
cutouts and the device's precision. `setup s` is the job's start (a zoom out's and an upscale's
include decoding, scaling and encoding the picture); `kept MiB` what autograd keeps for the backward
pass (on any device: the memory that grows with the picture); `peak MiB` CUDA's peak.
Models have the real architectures with random weights (CLIP ViT-B/32, the 8192-token decoder
and encoder). Prints a Markdown table.

    python -m bench.bench_canvas                    # CPU, 512 px, one timed step each
    python -m bench.bench_canvas --device cuda --steps 5
    python -m bench.bench_canvas --only upscale     # one edit
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

from bench.bench_engine import _peak_mib, _reset_peak, _sync, kept_mib, ops_per_step
from bench.random_models import random_models
from generator.contract.canvas import panned, squared
from generator.contract.edits import EditSpec, TokenGrid, free_from_cells, pack_free
from generator.contract.quality import DEFAULT_QUALITY, PRESETS
from generator.contract.settings import DrawSettings, Job
from generator.contract.threads import WORKER_RESERVED_CORES, available_cores
from generator.method.canvas import upscaled, zoomed
from generator.method.edits import edit_job
from generator.method.engine import Engine
from generator.method.fast import auto_precision
from generator.method.runtime import configure_torch
from generator.models.loaders import Models, load_encoder
from tests.synthetic import write_encoder

PROMPT = "a harbour at dawn"


def _grid(models: Models, side: int) -> TokenGrid:
    cells = side // 8
    tokens = torch.randint(models.vocab_size, (cells * cells,), generator=torch.Generator())
    return TokenGrid(cells, cells, models.vocab_size, models.decoder_sha256, tuple(tokens.tolist()))


def _edits(engine: Engine, grid: TokenGrid) -> list[tuple[str, Callable[[], tuple[Job, str]]]]:
    """Each edit as a function making its job (timed as the job's setup) and its tile axes."""
    base = Job(PROMPT, 1, 10)
    region = free_from_cells(["B2", "B3", "C2", "C3"], grid.rows, grid.cols)
    wide, wide_fresh = panned(grid, "right")

    def square() -> tuple[Job, str]:
        canvas, fresh = squared(wide)
        return edit_job(base, canvas, EditSpec(kind="square", free_b64=pack_free(fresh))), ""

    def zoom() -> tuple[Job, str]:
        canvas, fresh = zoomed(engine, grid, 2.0)
        return edit_job(base, canvas, EditSpec(kind="zoom", factor=2.0), fresh), ""

    def upscale() -> tuple[Job, str]:
        return edit_job(base, upscaled(engine, grid), EditSpec(kind="upscale")), ""

    return [
        ("drawing (no edit)", lambda: (base, "")),
        ("seamless tile", lambda: (base, "xy")),
        ("Vary (Strong)", lambda: (edit_job(base, grid, EditSpec(kind="strong")), "")),
        (
            "Vary (Region), 4 of 16 cells",
            lambda: (edit_job(base, grid, EditSpec(kind="region", free_b64=pack_free(region))), ""),
        ),
        (
            "pan right",
            lambda: (
                edit_job(
                    base,
                    wide,
                    EditSpec(kind="pan", direction="right", free_b64=pack_free(wide_fresh)),
                ),
                "",
            ),
        ),
        ("Make Square of the pan", square),
        ("zoom out 2x", zoom),
        ("Upscale (Creative)", upscale),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--size", type=int, default=512, help="the source's side (default 512)")
    parser.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up")
    parser.add_argument(
        "--only", default="", help="the edits whose name holds this text (default: every one)"
    )
    parser.add_argument(
        "--threads", type=int, default=max(1, available_cores() - WORKER_RESERVED_CORES)
    )
    args = parser.parse_args()
    configure_torch(args.threads)
    device = torch.device(args.device)
    models = random_models(device)
    with tempfile.TemporaryDirectory() as scratch:
        encoder = load_encoder(
            str(write_encoder(Path(scratch) / "encoder.pt", "full")), device=device
        )
    quality = PRESETS[DEFAULT_QUALITY]
    precision = auto_precision(device)
    engine = Engine(models, picture_encoder=lambda: encoder)
    grid = _grid(models, args.size)
    print(
        f"{date.today()}, {platform.processor() or args.device}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, full-size random models, {quality.cutouts} cutouts "
        f"({DEFAULT_QUALITY}), {precision}; the source {args.size}x{args.size}; median of "
        f"{args.steps} step(s) after 1 warm-up"
    )
    print()
    print("| edit | size | setup s | ms/step | kept MiB | peak MiB | ops/step |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, make in _edits(engine, grid):
        if args.only.lower() not in name.lower():
            continue
        started = time.perf_counter()
        job, tile = make()
        if job.init_tokens is not None:
            rows, cols = job.init_tokens.shape[1:]
        else:
            rows = cols = grid.rows
        settings = DrawSettings(
            width=8 * cols, height=8 * rows, cutouts=quality.cutouts, precision=precision, tile=tile
        )
        batch = engine.batch()
        batch.add(job, settings)
        _sync(device)
        setup = time.perf_counter() - started
        batch.step()  # warm-up
        _reset_peak(device)
        times = []
        for _ in range(args.steps):
            _sync(device)
            began = time.perf_counter()
            batch.step()
            _sync(device)
            times.append((time.perf_counter() - began) * 1000)
        kept, ops, peak = kept_mib(batch.step), ops_per_step(batch.step), _peak_mib(device)
        shown = "-" if peak is None else f"{peak:.0f}"
        print(
            f"| {name} | {8 * cols}x{8 * rows} | {setup:.2f} | {sorted(times)[len(times) // 2]:.0f}"
            f" | {kept:.0f} | {shown} | {ops} |"
        )


if __name__ == "__main__":
    main()
