"""What screening a picture costs against a step of the drawing it screens (issue 30, point 7).

One screening is what the worker does for each preview, the final picture and each kept frame
of a time-lapse: the picture prepared as CLIP's preprocessing does (a 512x512 picture scaled to
224), one image forward of the main CLIP in fp32, its cosines with the concepts (embedded
beforehand, as the worker keeps them) and Q16's probability from the vendored ViT-B/32 rows.
A final picture also goes from Pillow to a tensor first. The step is one 512 px engine step at
the default quality's cutouts and the worker's precision. Models have the real architectures
(CLIP ViT-B/32, the 8192-token decoder) with random weights: speed does not depend on the values.
Screenings and steps alternate, so that whatever else the machine does falls on both alike.
Prints a Markdown table; the goal is a screening under 5 % of a step.

    python -m bench.bench_screening                 # CPU, one thread (a worker's on 2 cores)
    python -m bench.bench_screening --threads 2 --steps 3
    python -m bench.bench_screening --device cuda --steps 5  # bench/gpu_check.sh runs this
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch

from bench.random_models import random_models
from generator.contract.jobs import JobSpec
from generator.contract.quality import DEFAULT_QUALITY, PRESETS
from generator.contract.screening import Concept, ScreeningSpec
from generator.contract.settings import DrawSettings, Job
from generator.contract.threads import WORKER_RESERVED_CORES, available_cores
from generator.contract.timelapse import frame_every
from generator.method.engine import Engine, to_pil
from generator.method.fast import auto_precision
from generator.method.runtime import configure_torch
from generator.method.screening import Screener, pixels
from generator.models.learned_prompts import learned_prompts

PROMPT = "an image of the music"
GOAL = 0.05  # of a step
# A server's own concepts besides the built-in ones, as a spec brings them.
SPEC = ScreeningSpec(concepts=(Concept(text="a spider", threshold=0.25),))


def _timed(run: Callable[[], object], device: torch.device) -> float:
    """Milliseconds one call of `run` takes, until the device has done its work too."""
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or "CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, available_cores() - WORKER_RESERVED_CORES),
        help="torch threads (default: what a worker takes here, every core but one)",
    )
    parser.add_argument("--size", type=int, default=512, help="picture side (default 512)")
    parser.add_argument(
        "--steps", type=int, default=2, help="timed engine steps, after one warm-up (default 2)"
    )
    parser.add_argument(
        "--screenings",
        type=int,
        default=5,
        help="timed screenings of each kind after each step (default 5)",
    )
    parser.add_argument("--precision", help="the step's precision (default: the device's auto)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()

    configure_torch(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    models = random_models(device)
    quality = PRESETS[DEFAULT_QUALITY]
    precision = args.precision or auto_precision(device)
    settings = DrawSettings(
        width=args.size, height=args.size, cutouts=quality.cutouts, precision=precision
    )
    batch = Engine(models, settings).batch()
    batch.add(Job(PROMPT, 0, 2 + args.steps), settings)
    screener = Screener(models.clip, learned_prompts("ViT-B/32", device))
    picture = torch.rand(3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    picture = picture.to(device)
    final = to_pil(picture)
    screener.score(picture, SPEC)  # embeds the concepts, which the worker then keeps
    batch.step()  # warm-up

    steps: list[float] = []
    previews: list[float] = []
    finals: list[float] = []
    for _ in range(args.steps):
        steps.append(_timed(batch.step, device))
        for _ in range(args.screenings):
            previews.append(_timed(lambda: screener.score(picture, SPEC), device))
            finals.append(_timed(lambda: screener.score(pixels(final, device), SPEC), device))

    step_ms = statistics.median(steps)
    every_s = float(JobSpec.model_fields["progress_every_s"].default)
    frames_every = frame_every(quality.iterations)
    print(
        f"{date.today()}, {_device_name(device)}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, full-size random ViT-B/32 and decoder; step: "
        f"{args.size} px, {quality.cutouts} cutouts ({DEFAULT_QUALITY}), {precision}, median "
        f"of {len(steps)} after 1 warm-up; screening: {len(SPEC.picture_concepts())} concepts "
        f"and Q16, median of {len(previews)}"
    )
    print()
    print(f"| what | threads | ms per screening | ms per step | % of a step | under {GOAL:.0%} |")
    print("|---|---:|---:|---:|---:|---|")
    for label, times in (("preview (tensor on the device)", previews), ("final picture", finals)):
        ms = statistics.median(times)
        share = ms / step_ms
        print(
            f"| {label} | {args.threads} | {ms:.1f} | {step_ms:.1f} | {100 * share:.2f}% | "
            f"{'yes' if share < GOAL else 'NO'} |"
        )
    preview_ms = statistics.median(previews)
    # A preview at most every `every_s`: once per step where a step takes longer than that.
    per_step = preview_ms / max(step_ms, every_s * 1000)
    print()
    frames_share = preview_ms / frames_every / step_ms
    print(
        f"Previews at most every {every_s:g} s (the default): {100 * per_step:.2f}% of a step "
        f"on average. A time-lapse of a {DEFAULT_QUALITY} job ({quality.iterations} iterations) "
        f"screens a frame every {frames_every} steps: at most {100 * frames_share:.2f}% more "
        "(nothing more at a step whose preview goes out, which shows that frame)."
    )


if __name__ == "__main__":
    main()
