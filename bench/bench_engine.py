"""Time the engine against a plain reference loop written straight from the method.

Both loops use the same models, size and cutouts. Without weight files the models have the
real architectures (CLIP ViT-B/32, the 8192-token decoder) with random weights: speed does not
depend on the values. Prints a Markdown table:

    python -m bench.bench_engine                      # defaults suited to the device present
    python -m bench.bench_engine --sizes 256,512 --cutouts 32 --iterations 20 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from dall_e import unmap_pixels
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from generator.contract.prompts import parse_prompts
from generator.contract.settings import DrawSettings, Job
from generator.method.engine import Engine
from generator.method.fast import auto_precision
from generator.method.objective import embed_prompts
from generator.models.loaders import CLIP_MEAN, CLIP_STD, Models, load_models
from tests.synthetic import write_clip, write_decoder

PROMPT = "an image of the music"


@dataclass(frozen=True)
class Timing:
    ms_per_iteration: float  # wall time per step of the whole batch
    peak_mib: float | None  # peak device memory (CUDA only)
    kept_mib: float  # what autograd keeps for the backward pass, on any device
    jobs: int = 1
    ops: int | None = None  # aten operations the host dispatches per step

    @property
    def iterations_per_second(self) -> float:
        """Iterations per second summed over the jobs stepped together."""
        return self.jobs * 1000 / self.ms_per_iteration


# Dense bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s (no sparsity).
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


def bf16_peak(device: torch.device) -> tuple[float, str]:
    """The device's bf16 peak in TFLOP/s and where the number comes from.

    Known GPUs use the data sheet; anything else (CPUs included) is measured with a large bf16
    matrix product, which is what dense bf16 work can reach there.
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in BF16_PEAK_TFLOPS.items():
            if key in name:
                return tflops, f"data sheet for {key}"
    side = 8192 if device.type == "cuda" else 2048
    a = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    b = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(8):  # the fastest of several, so first-call set-up and neighbours count less
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * side**3 / best / 1e12, f"measured: fastest {side}x{side} bf16 matmul"


def kept_mib(step: Callable[[], object]) -> float:
    """MiB of tensors autograd keeps from `step`'s forward pass for its backward pass."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return total / 2**20


class _OpCounter(TorchDispatchMode):
    """Counts the aten operations the host dispatches: each is at least one kernel launch on a
    GPU. A replayed CUDA graph's kernels are not dispatched: only the copies around it count."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(step: Callable[[], object]) -> int:
    counter = _OpCounter()
    with counter:
        step()
    return counter.count


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
    kept = kept_mib(step)
    for _ in range(warmup):
        step()
    ops = ops_per_step(step)
    _sync(models.device)
    _reset_peak(models.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(models.device)
    elapsed = time.perf_counter() - start
    return Timing(elapsed / steps * 1000, _peak_mib(models.device), kept, ops=ops)


def time_engine(
    models: Models,
    settings: DrawSettings,
    warmup: int,
    steps: int,
    *,
    jobs: int = 1,
    cuda_graphs: bool = False,
) -> Timing:
    """`jobs` jobs stepped together in one batch, as the worker runs them."""
    batch = Engine(models, settings, cuda_graphs=cuda_graphs).batch()
    for seed in range(jobs):
        batch.add(Job(PROMPT, seed, 2 + warmup + steps), settings)
    kept = kept_mib(batch.step)
    for _ in range(warmup):
        batch.step()
    ops = ops_per_step(batch.step)
    _sync(models.device)
    _reset_peak(models.device)
    start = time.perf_counter()
    for _ in range(steps):
        batch.step()
    _sync(models.device)
    elapsed = time.perf_counter() - start
    return Timing(elapsed / steps * 1000, _peak_mib(models.device), kept, jobs, ops)


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
        "--precisions",
        type=lambda text: text.split(","),
        help="engine precisions to time; the last is also timed with checkpointing and with "
        "several jobs (default fp32 and the device's automatic precision)",
    )
    parser.add_argument(
        "--jobs",
        type=_ints,
        default=[1, 2, 4],
        help="jobs per step for the throughput rows, at the first size (default 1,2,4)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="also time the last precision with torch.compile, which compiles during the "
        "warm-up (default on CUDA only)",
    )
    parser.add_argument(
        "--graphs",
        action=argparse.BooleanOptionalAction,
        help="also time the last precision with the step captured in a CUDA graph, and with "
        "graphs and compile together when --compile is on (default on CUDA only)",
    )
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
    precisions = args.precisions or sorted({"fp32", auto_precision(models.device)}, reverse=True)
    compiled = cuda if args.compile is None else args.compile
    graphed = cuda if args.graphs is None else args.graphs

    name = torch.cuda.get_device_name(models.device) if cuda else platform.processor() or "CPU"
    peak_tflops, peak_source = bf16_peak(models.device)
    print(
        f"device: {models.device} ({name}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, models: {args.clip or args.arch}/"
        f"{args.decoder or args.arch}, {steps} timed iterations after {args.warmup} warm-up"
    )
    print(f"bf16 peak: {peak_tflops:.2f} TFLOP/s ({peak_source})")
    print()
    print("GFLOP/it: one iteration's forward and backward, counted on the reference step.")
    print("kept MiB: activations autograd keeps for the backward pass (any device);")
    print("peak MiB: peak device memory (CUDA only).")
    print("ops/step: aten operations the host dispatches per step (with graphs: the replay's")
    print("bookkeeping only, a handful of copies).")
    print()
    print(
        "| size | cutouts | loop | jobs | ms/step | it/s | GFLOP/it | TFLOP/s | % bf16 peak "
        "| kept MiB | peak MiB | ops/step | speed-up |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for side in sizes:
        for cutouts in cutout_counts:
            gflop = count_gflop(models, side, cutouts)
            reference = time_reference(models, side, cutouts, args.warmup, steps)
            base = DrawSettings(width=side, height=side, cutouts=cutouts)
            rows = [("reference", reference)]
            for precision in precisions:
                settings = replace(base, precision=precision)
                rows.append(
                    (f"engine {precision}", time_engine(models, settings, args.warmup, steps))
                )
            last = replace(base, precision=precisions[-1])
            rows.append(
                (
                    f"engine {precisions[-1]} ckpt",
                    time_engine(models, replace(last, checkpointing=True), args.warmup, steps),
                )
            )
            if compiled:
                rows.append(
                    (
                        f"engine {precisions[-1]} compiled",
                        time_engine(models, replace(last, compile=True), args.warmup, steps),
                    )
                )
            if graphed:
                variants = [("graphs", last)]
                if compiled:
                    variants.append(("graphs compiled", replace(last, compile=True)))
                for label, settings in variants:
                    timing = time_engine(models, settings, args.warmup, steps, cuda_graphs=True)
                    rows.append((f"engine {precisions[-1]} {label}", timing))
            if side == sizes[0] and cutouts == cutout_counts[0]:
                for jobs in args.jobs:
                    if jobs > 1:
                        timing = time_engine(
                            models, last, args.warmup, steps, jobs=jobs, cuda_graphs=graphed
                        )
                        label = "graphs" if graphed else ""
                        rows.append((f"engine {precisions[-1]} {label}".rstrip(), timing))
            for label, timing in rows:
                _row(
                    label,
                    timing,
                    side=side,
                    cutouts=cutouts,
                    gflop=gflop,
                    peak_tflops=peak_tflops,
                    reference=reference,
                )


def _row(
    label: str,
    timing: Timing,
    *,
    side: int,
    cutouts: int,
    gflop: float,
    peak_tflops: float,
    reference: Timing,
) -> None:
    """One table row; throughput figures count every job of the step."""
    tflops = gflop * timing.iterations_per_second / 1000
    peak = f"{timing.peak_mib:.0f}" if timing.peak_mib is not None else "n/a"
    ops = str(timing.ops) if timing.ops is not None else "n/a"
    ratio = timing.iterations_per_second / reference.iterations_per_second
    print(
        f"| {side} | {cutouts} | {label} | {timing.jobs} | {timing.ms_per_iteration:.1f} | "
        f"{timing.iterations_per_second:.2f} | {gflop:.1f} | {tflops:.3f} | "
        f"{100 * tflops / peak_tflops:.1f}% | {timing.kept_mib:.0f} | {peak} | {ops} | "
        f"{ratio:.2f}x |"
    )


if __name__ == "__main__":
    main()
