"""Time the engine against a plain reference loop written straight from the method.

Both loops use the same models, size and cutouts. Without weight files the models have the
real architectures (CLIP ViT-B/32, the 8192-token decoder) with random weights: speed does not
depend on the values. Prints a Markdown table:

    python bench/bench_engine.py                      # defaults suited to the device present
    python bench/bench_engine.py --sizes 256,512 --cutouts 32 --iterations 20 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from dall_e import unmap_pixels
from torch.utils.flop_counter import FlopCounterMode

from generator.engine import Engine, StepInfo
from generator.loaders import CLIP_MEAN, CLIP_STD, Models, load_models
from generator.objective import embed_prompts
from generator.prompts import parse_prompts
from generator.settings import DrawSettings, Job
from generator.synthetic import write_clip, write_decoder

PROMPT = "an image of the music"


@dataclass(frozen=True)
class Timing:
    ms_per_iteration: float
    peak_mib: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def reference_step_fn(models: Models, side: int, cutouts: int) -> Callable[[], None]:
    """One iteration of the method as the notebooks wrote it: a Python loop of crops."""
    device = models.device
    tokens = side // 8
    logits = torch.zeros(1, models.vocab_size, tokens, tokens, device=device)
    logits = torch.nn.Parameter(logits.normal_())
    optimizer = torch.optim.Adam([logits], lr=0.1)
    text = embed_prompts(models.clip, parse_prompts(PROMPT))
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    resolution = models.clip_resolution

    def step() -> None:
        soft = F.gumbel_softmax(logits, tau=1.0, dim=1)
        image = unmap_pixels(torch.sigmoid(models.decoder(soft)[:, :3].float()))
        crops = []
        for _ in range(cutouts):
            size = int(side * torch.zeros(1).normal_(mean=0.8, std=0.3).clip(0.5, 0.98))
            x = int(torch.randint(0, side - size + 1, ()))
            y = int(torch.randint(0, side - size + 1, ()))
            crop = image[:, :, y : y + size, x : x + size]
            crops.append(F.interpolate(crop, (resolution, resolution), mode="bilinear"))
        embeds = models.clip.encode_image((torch.cat(crops) - mean) / std).float()
        loss = -F.cosine_similarity(embeds, text).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def count_gflop(models: Models, side: int, cutouts: int) -> float:
    """The work of one iteration, forward and backward, as torch's FLOP counter sees it."""
    step = reference_step_fn(models, side, cutouts)
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops()) / 1e9


def time_reference(models: Models, side: int, cutouts: int, warmup: int, steps: int) -> Timing:
    step = reference_step_fn(models, side, cutouts)
    for _ in range(warmup):
        step()
    _sync(models.device)
    _reset_peak(models.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(models.device)
    elapsed = time.perf_counter() - start
    return Timing(elapsed / steps * 1000, _peak_mib(models.device))


def time_engine(
    models: Models, side: int, cutouts: int, warmup: int, steps: int, *, precision: str
) -> Timing:
    settings = DrawSettings(width=side, height=side, cutouts=cutouts, precision=precision)
    engine = Engine(models, settings)
    marks: dict[str, float] = {}

    def on_step(info: StepInfo) -> None:
        if info.step in (warmup, warmup + steps):
            _sync(models.device)
            marks["start" if info.step == warmup else "end"] = time.perf_counter()
            if info.step == warmup:
                _reset_peak(models.device)

    engine.draw(Job(PROMPT, 0, warmup + steps), on_step)
    elapsed = marks["end"] - marks["start"]
    return Timing(elapsed / steps * 1000, _peak_mib(models.device))


def _models(args: argparse.Namespace, scratch: Path) -> Models:
    clip_file = args.clip or str(write_clip(scratch / "clip.pt", args.arch))
    decoder_file = args.decoder or str(
        write_decoder(scratch / "decoder.pt", args.arch, "state_dict")
    )
    return load_models(clip_file, decoder_file, device=args.device, progress=False)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--arch",
        default="full",
        choices=("full", "tiny"),
        help="random model size when no weight files are given (default full)",
    )
    parser.add_argument("--clip", help="CLIP checkpoint to use instead of random weights")
    parser.add_argument("--decoder", help="decoder checkpoint to use instead of random weights")
    parser.add_argument(
        "--sizes", type=_ints, help="image sides (default 128 on CPU, 256,512 on CUDA)"
    )
    parser.add_argument(
        "--cutouts", type=_ints, help="cutout counts (default 8 on CPU, 32,64 on CUDA)"
    )
    parser.add_argument(
        "--iterations", type=int, help="timed iterations (default 3 on CPU, 20 on CUDA)"
    )
    parser.add_argument(
        "--precisions", type=lambda text: text.split(","), default=["fp32", "bf16"],
        help="engine precisions to time (default fp32,bf16)",
    )  # fmt: skip
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed iterations first (default 2)"
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        models = _models(args, Path(scratch))
    cuda = models.device.type == "cuda"
    sizes = args.sizes or ([256, 512] if cuda else [128])
    cutout_counts = args.cutouts or ([32, 64] if cuda else [8])
    steps = args.iterations or (20 if cuda else 3)

    name = torch.cuda.get_device_name(models.device) if cuda else platform.processor() or "CPU"
    print(
        f"device: {models.device} ({name}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, models: {args.clip or args.arch}/"
        f"{args.decoder or args.arch}, {steps} timed iterations after {args.warmup} warm-up"
    )
    print()
    print("GFLOP/it: one iteration's forward and backward, counted on the reference step.")
    print()
    print("| size | cutouts | loop | ms/it | it/s | GFLOP/it | TFLOP/s | peak MiB | speed-up |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for side in sizes:
        for cutouts in cutout_counts:
            gflop = count_gflop(models, side, cutouts)
            reference = time_reference(models, side, cutouts, args.warmup, steps)
            rows = [("reference", reference)] + [
                (f"engine {p}", time_engine(models, side, cutouts, args.warmup, steps, precision=p))
                for p in args.precisions
            ]
            for label, timing in rows:
                peak = f"{timing.peak_mib:.0f}" if timing.peak_mib is not None else "n/a"
                ratio = reference.ms_per_iteration / timing.ms_per_iteration
                tflops = gflop / timing.ms_per_iteration
                print(f"| {side} | {cutouts} | {label} | {timing.ms_per_iteration:.1f} | "
                      f"{1000 / timing.ms_per_iteration:.2f} | {gflop:.1f} | {tflops:.3f} | "
                      f"{peak} | {ratio:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
