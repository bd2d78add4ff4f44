"""What each quality preset costs: seconds per iteration and per picture, and peak memory.

Each preset runs in a process of its own (so that its peak memory is its own), loading its CLIP
models by name from a weights cache, with a few timed iterations after a warm-up one; the
seconds per picture are the seconds per iteration times the preset's iterations. Without
weights the models are random with the real architectures (ViT-B/32, ViT-B/16, RN50 and the
dVAE decoder), written into a temporary cache; with `--cache-dir` of real weights this is what
to run on a GPU. `--size` replaces the presets' sizes (a CPU cannot draw 512 px in a useful
time); the GPU check runs them at their own size. Prints a Markdown table:

    python -m bench.bench_quality --size 128            # this CPU, a stand-in size
    python -m bench.bench_quality --device cuda --cache-dir ~/.cache/pseudo-dalle
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from generator.contract.quality import PRESETS, QUALITIES
from generator.contract.settings import DrawSettings, Job
from generator.contract.threads import choose_threads
from generator.contract.weights import CLIP_WEIGHTS, DEFAULT_DECODER_URL
from generator.method.engine import Engine, StepInfo
from generator.method.fast import resolve_precision
from generator.method.runtime import configure_torch
from generator.models.loaders import load_models
from tests.synthetic import ClipSize, write_clip, write_decoder

STAND_INS: dict[str, ClipSize] = {"ViT-B/32": "full", "ViT-B/16": "full-B16", "RN50": "full-RN50"}
PROMPT = "a lighthouse on a cliff at sunset"


def _random_cache(folder: Path) -> tuple[Path, str]:
    """Full-size random CLIPs under the presets' model files, and a random decoder."""
    for name, size in STAND_INS.items():
        path = folder / CLIP_WEIGHTS[name].filename
        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip(path, size)
    return folder, str(write_decoder(folder / "decoder.pkl", "full"))


def _measure(args: argparse.Namespace) -> dict[str, float]:
    """One preset, in this process: seconds per timed iteration and peak memory in MiB."""
    configure_torch(choose_threads(args.threads, reserve=0))
    chosen = PRESETS[args.one]
    models = load_models(
        list(chosen.clip_models),
        args.decoder,
        device=args.device,
        cache_dir=args.cache_dir,
        offline=True,
        progress=False,
    )
    side = args.size or chosen.size
    settings = DrawSettings(
        width=side,
        height=side,
        cutouts=chosen.cutouts,
        precision=resolve_precision(args.precision, models.device),
    )
    stamps: list[float] = []

    def on_step(info: StepInfo) -> None:
        float(info.loss)  # waits for the device, so each stamp ends its step
        stamps.append(time.perf_counter())

    Engine(models, settings).draw(Job(PROMPT, 0, args.warmup + args.steps), on_step)
    per_step = (stamps[-1] - stamps[args.warmup - 1]) / args.steps
    if models.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(models.device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"s_per_it": per_step, "peak_mib": peak, "side": side}


def _row(quality: str, measured: dict[str, float], device: str) -> str:
    chosen = PRESETS[quality]
    per_picture = measured["s_per_it"] * chosen.iterations
    memory = "GPU" if device.startswith("cuda") else "RSS"
    return (
        f"| {quality} | {int(measured['side'])} | {chosen.cutouts} | "
        f"{' + '.join(chosen.clip_models)} | {chosen.iterations} | {measured['s_per_it']:.2f} | "
        f"{1 / measured['s_per_it']:.3f} | {per_picture / 60:.1f} min | "
        f"{measured['peak_mib']:.0f} MiB {memory} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="side for every preset")
    parser.add_argument("--steps", type=int, default=2, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--cache-dir", type=Path, default=None, help="real weights, by name")
    parser.add_argument("--decoder", default=DEFAULT_DECODER_URL)
    parser.add_argument("--qualities", nargs="+", choices=QUALITIES, default=list(QUALITIES))
    parser.add_argument("--one", choices=QUALITIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        if args.cache_dir is None:
            args.cache_dir, args.decoder = _random_cache(Path(scratch))
        print(
            f"{date.today()} · {platform.processor() or platform.machine()} · "
            f"torch {torch.__version__} · {args.device} · {args.steps} timed iteration(s) "
            f"after {args.warmup}"
        )
        print()
        print(
            "| quality | side (px) | cutouts | CLIP models | iterations | s/it | it/s | "
            "per picture | peak memory |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for quality in args.qualities:
            passed = [
                "--one",
                quality,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--threads",
                str(args.threads),
                "--device",
                args.device,
                "--precision",
                args.precision,
                "--cache-dir",
                str(args.cache_dir),
                "--decoder",
                args.decoder,
                *(["--size", str(args.size)] if args.size else []),
            ]
            done = subprocess.run(
                [sys.executable, __file__, *passed], capture_output=True, text=True, check=True
            )
            print(_row(quality, json.loads(done.stdout.splitlines()[-1]), args.device), flush=True)


if __name__ == "__main__":
    main()
