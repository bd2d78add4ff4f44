"""What the edits of a picture do (issue 31): how many tokens Vary (Subtle) and Vary (Strong)
change, seed by seed, and how far the decoder carries a changed token (its reach).

A source picture is drawn first (its own seed, `--source-iterations`); each edit then starts
from its tokens with `generator.contract.edits.EDITS` as declared, for its share of
`--full-iterations` (the server's default iterations in the bot, the quality's on the command
line). A token counts as changed where the edit's most likely token is not the source's. The
reach is measured on the decoder's real architecture (random weights: which pixels a token
touches does not depend on the values) by changing one token of a 48x48 grid.

    python -m bench.bench_edits                          # full-size models, CPU, seeds 1-5
    python -m bench.bench_edits --models tiny --size 256 --full-iterations 200
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import torch

from bench.random_models import random_models
from generator.contract.edits import EDITS, EditKind, EditSpec, TokenGrid, edit_iterations
from generator.contract.settings import DrawSettings, Job
from generator.contract.threads import WORKER_RESERVED_CORES, available_cores
from generator.method.edits import edit_job, measured_reach
from generator.method.engine import Engine
from generator.method.runtime import configure_torch

PROMPT = "a lighthouse on a cliff at sunset"
VARIES: tuple[EditKind, ...] = ("subtle", "strong")


def _tokens(logits: torch.Tensor) -> torch.Tensor:
    return logits[0].argmax(dim=-1)  # (h, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("full", "tiny"), default="full")
    parser.add_argument("--size", type=int, default=64, help="picture side (default 64)")
    parser.add_argument("--cutouts", type=int, default=4, help="cutouts per step (default 4)")
    parser.add_argument(
        "--full-iterations",
        type=int,
        default=100,
        help="a full run, of which each edit takes its share (default 100)",
    )
    parser.add_argument("--source-iterations", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default 5)")
    parser.add_argument(
        "--threads", type=int, default=max(1, available_cores() - WORKER_RESERVED_CORES)
    )
    args = parser.parse_args()

    configure_torch(args.threads)
    models = random_models(torch.device("cpu"), args.models)
    settings = DrawSettings(
        width=args.size, height=args.size, cutouts=args.cutouts, precision="fp32"
    )
    engine = Engine(models, settings)
    source = engine.draw(Job(PROMPT, 0, args.source_iterations))
    kept = _tokens(source.logits)
    rows, cols = kept.shape
    grid = TokenGrid(
        rows, cols, models.vocab_size, models.decoder_sha256, tuple(kept.flatten().tolist())
    )
    print(
        f"{date.today()}, {platform.processor() or 'CPU'}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, {args.models}-size random models, {args.size} px "
        f"({rows}x{cols} tokens), {args.cutouts} cutouts, fp32; a full run of "
        f"{args.full_iterations} iterations; the source drawn with seed 0 for "
        f"{args.source_iterations}"
    )
    print()
    header = " | ".join(
        f"{kind} ({EDITS[kind].fresh:.0%} fresh, strength {EDITS[kind].strength:g}, "
        f"{edit_iterations(kind, args.full_iterations)} it.): tokens changed"
        for kind in VARIES
    )
    print(f"| seed | {header} | subtle < strong | s/it |")
    print("|---:|" + "---:|" * len(VARIES) + "---|---:|")
    for seed in range(1, args.seeds + 1):
        changed, seconds, steps = [], 0.0, 0
        for kind in VARIES:
            iterations = edit_iterations(kind, args.full_iterations)
            job = edit_job(Job(PROMPT, seed, iterations), grid, EditSpec(kind=kind))
            started = time.perf_counter()
            result = engine.draw(job)
            seconds += time.perf_counter() - started
            steps += result.steps
            changed.append(int((_tokens(result.logits) != kept).sum()))
        cells = " | ".join(f"{n} of {rows * cols} ({n / (rows * cols):.0%})" for n in changed)
        print(
            f"| {seed} | {cells} | {'yes' if changed[0] < changed[1] else 'NO'} | "
            f"{seconds / steps:.2f} |"
        )
    reach = measured_reach(models.decoder, models.vocab_size, torch.device("cpu"))
    print()
    print(
        f"Reach of the {args.models}-size decoder: a changed token changes pixels up to {reach} "
        f"px ({reach / 8:.2f} tokens) beyond its own 8x8 square (CPU, fp32)."
    )


if __name__ == "__main__":
    main()
