"""What a worker's Prometheus metrics cost: iterations per second with them on and off.

The real worker core draws the same job again and again, alternating: without metrics, then
with them on (figures kept at each progress report and job end, served over HTTP and scraped
every `--scrape-every` seconds, far more often than Prometheus would), so that whatever else
the machine does falls on both alike. Progress is reported every `--progress-every` seconds,
more often than the bot allows (2 s), so the metrics' share is, if anything, overstated.
Prints a Markdown table; the goal is on/off >= 0.97 (issue 24).

    python -m bench.bench_metrics                        # tiny random models, 64x64, CPU
    python -m bench.bench_metrics --arch full --size 128 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import threading
import urllib.request
from datetime import date
from pathlib import Path

import torch

from generator.contract.jobs import JobSpec
from generator.contract.protocol import Failed, Finished, Message, StartJob, WorkerOptions
from generator.contract.quality import DEFAULT_QUALITY
from generator.method.runtime import configure_torch
from generator.models.loaders import Models, load_models
from generator.worker.core import Worker
from generator.worker.metrics import WorkerMetrics
from tests.synthetic import write_clip, write_decoder

PROMPT = "an image of the music"
GOAL = 0.97


class _Channel:
    """Takes the worker's messages and keeps the job's last: `Finished`, or `Failed`."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ended: Finished | Failed | None = None

    def send(self, message: Message) -> None:
        if isinstance(message, Finished | Failed):
            self.ended = message
            self.done.set()


def _scrape(url: str, every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()


def draw(models: Models, args: argparse.Namespace, *, metrics_on: bool, port: int) -> float:
    """One job drawn by a fresh worker core; its iterations per second (the engine's loop)."""
    channel = _Channel()
    options = WorkerOptions(cutouts=args.cutouts, threads=args.threads)
    metrics = WorkerMetrics(models.device) if metrics_on else None
    worker = Worker(models, channel, options, metrics=metrics)
    server = metrics.serve(f"127.0.0.1:{port}") if metrics is not None else None
    stop = threading.Event()
    scraper = threading.Thread(
        target=_scrape, args=(f"http://127.0.0.1:{port}/metrics", args.scrape_every, stop)
    )
    if server is not None:
        scraper.start()
    spec = JobSpec(
        prompt=PROMPT,
        seed=0,
        iterations=args.iterations,
        width=args.size,
        height=args.size,
        quality=DEFAULT_QUALITY,
        cutouts=args.cutouts,
        clip_models=models.clip_names[:1],
        progress_every_s=args.progress_every,
    )
    serving = threading.Thread(target=worker.serve)
    serving.start()
    worker.submit(StartJob(job_id=1, spec=spec))
    try:
        channel.done.wait()
    finally:
        worker.close()
        serving.join()
        stop.set()
        if server is not None:
            scraper.join()
            server.close()
    finished = channel.ended
    assert isinstance(finished, Finished), finished
    assert finished.steps == args.iterations
    return finished.steps / finished.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--arch", default="tiny", choices=("tiny", "full"))
    parser.add_argument("--size", type=int, default=64, help="picture side in pixels")
    parser.add_argument("--cutouts", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=300, help="per job")
    parser.add_argument("--rounds", type=int, default=6, help="jobs drawn with each setting")
    parser.add_argument("--threads", type=int, default=1, help="torch's CPU threads")
    parser.add_argument("--progress-every", type=float, default=0.5, metavar="S")
    parser.add_argument("--scrape-every", type=float, default=1.0, metavar="S")
    parser.add_argument("--port", type=int, default=9465, help="where the metrics are served")
    args = parser.parse_args()
    configure_torch(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        models = load_models(
            str(write_clip(Path(scratch) / "clip.pt", args.arch)),
            str(write_decoder(Path(scratch) / "decoder.pt", args.arch, "state_dict")),
            device=args.device,
            progress=False,
        )
    draw(models, args, metrics_on=False, port=args.port)  # warm-up: first-call set-up
    rates: dict[bool, list[float]] = {False: [], True: []}
    rows = []
    for round_ in range(1, args.rounds + 1):
        for metrics_on in (False, True):
            rate = draw(models, args, metrics_on=metrics_on, port=args.port)
            rates[metrics_on].append(rate)
            rows.append(f"| {round_} | {'on' if metrics_on else 'off'} | {rate:.2f} |")
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor()
    print(
        f"{date.today()}, {device or 'CPU'}, torch {torch.__version__}, {args.threads} "
        f"thread(s); {args.arch} models, {args.size}x{args.size}, {args.cutouts} cutouts, "
        f"{args.iterations} iterations a job, progress every {args.progress_every:g} s, "
        f"scraped every {args.scrape_every:g} s\n"
    )
    print("| round | metrics | it/s |\n|---:|---|---:|")
    print("\n".join(rows))
    verdict = "meets" if on / off >= GOAL else "misses"
    print(
        f"\nmedian it/s: off {off:.2f}, on {on:.2f}; on/off {on / off:.3f} "
        f"({verdict} the goal of {GOAL})"
    )


if __name__ == "__main__":
    main()
