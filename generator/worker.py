"""The worker process: loads the models once, then draws the bot's jobs, up to --max-batch of
them together.

It reads protocol lines on stdin and writes them on stdout; everything else (logs, tracebacks)
goes to stderr. A reader thread takes new jobs and cancellations while jobs run (both act at
the next step boundary), and a heartbeat thread keeps telling the bot the worker is alive. End
of stdin, or a closed stdout, means the bot is gone (it stopped, or it died and the pipes closed
with it): the worker exits at the next step boundary, whatever it is drawing.

    python -m generator.worker --clip-model ViT-B/32 --decoder URL_OR_PATH --latents DIR
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from generator.engine import DrawResult, Engine, StepInfo, to_pil
from generator.errors import GeneratorError
from generator.fast import resolve_precision
from generator.loaders import Models
from generator.options import (
    add_cuda_graphs_option,
    add_model_options,
    add_threads_option,
    models_from_args,
)
from generator.output import png_bytes, png_metadata
from generator.protocol import (
    CancelJob,
    Failed,
    Finished,
    Heartbeat,
    Message,
    Preparing,
    Progress,
    ProtocolError,
    Ready,
    StartJob,
    decode,
    encode,
    png_to_b64,
)
from generator.runtime import configure_torch
from generator.settings import PRECISION_CHOICES, RELAXATIONS, DrawSettings, Job
from generator.threads import WORKER_RESERVED_CORES, choose_threads

log = logging.getLogger("pseudo_dalle.worker")
HEARTBEAT_S = 1.0


class _Channel:
    """Protocol lines to the bot, one writer at a time. `gone` is set when the bot is."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.gone = threading.Event()

    def send(self, message: Message) -> None:
        with self._lock:
            if self.gone.is_set():
                return
            try:
                self._stream.write(encode(message))
                self._stream.flush()
            except (BrokenPipeError, ValueError):  # ValueError: the stream is closed
                self.gone.set()


@dataclass
class _Running:
    """A job in the batch: its request and its progress reporting state."""

    start: StartJob
    began: float
    last_sent: float
    first_step_done: float | None = None  # speeds count from here: compiling is not drawing


class Worker:
    """Draws up to `max_batch` jobs at once in one `Batch`, admitting waiting jobs and acting on
    cancellations at step boundaries."""

    def __init__(
        self,
        models: Models,
        channel: _Channel,
        latents: Path,
        *,
        cutouts: int,
        precision: str,
        checkpointing: bool = False,
        compile_networks: bool = False,
        relaxation: str = "codebook",
        cuda_graphs: bool = True,
        max_batch: int = 1,
    ) -> None:
        self.engine = Engine(models, cuda_graphs=None if cuda_graphs else False)
        self.relaxation = relaxation
        self.compiled_sizes: set[tuple[int, int]] = set()
        self.channel = channel
        self.latents = latents
        self.cutouts = cutouts
        self.precision = resolve_precision(precision, models.device)
        self.checkpointing = checkpointing
        self.compile_networks = compile_networks
        self.max_batch = max_batch
        self.jobs: queue.Queue[StartJob | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.batch = self.engine.batch()
        self.running: dict[int, _Running] = {}  # by batch handle
        self.busy: tuple[int, ...] = ()  # job ids, for the heartbeat thread

    def read_commands(self, stream: TextIO) -> None:
        """Reader thread: queue jobs, note cancellations; end of input ends the worker."""
        try:
            for line in stream:
                try:
                    message = decode(line)
                except ProtocolError as error:
                    log.error("ignoring a bad line from the bot: %s", error)
                    continue
                if isinstance(message, StartJob):
                    self.jobs.put(message)
                elif isinstance(message, CancelJob):
                    self.cancelled.add(message.job_id)
        finally:
            self.channel.gone.set()
            self.jobs.put(None)  # wakes `serve` if it waits for a job

    def beat(self) -> None:
        """Heartbeat thread, until the bot is gone."""
        while not self.channel.gone.is_set():
            self.channel.send(Heartbeat(busy_job_ids=list(self.busy)))
            self.channel.gone.wait(HEARTBEAT_S)

    def serve(self) -> None:
        """Until the bot is gone: admit, stop cancelled jobs, step; repeat. The bot being gone
        is seen at every step boundary, also while every place is taken."""
        while not self.channel.gone.is_set():
            while len(self.batch) < self.max_batch:
                try:
                    start = self.jobs.get(block=not self.batch)
                except queue.Empty:
                    break
                if start is None or self.channel.gone.is_set():
                    return
                self._admit(start)
            for handle, entry in list(self.running.items()):
                if entry.start.job_id in self.cancelled:
                    self._done(handle, self.batch.stop(handle))
            if self.batch:
                self._step()

    def _admit(self, start: StartJob) -> None:
        try:
            settings = DrawSettings(
                width=start.width, height=start.height, cutouts=self.cutouts,
                precision=self.precision, checkpointing=self.checkpointing,
                compile=self.compile_networks, relaxation=self.relaxation,
            )  # fmt: skip
            init = None
            if start.init_latent:
                init = torch.load(start.init_latent, map_location="cpu", weights_only=True)
            job = Job(start.prompt, start.seed, start.iterations, init_logits=init)
            handle = self.batch.add(job, settings)
        except GeneratorError as error:
            self.channel.send(Failed(start.job_id, str(error)))
            return
        except Exception:
            log.exception("job %s could not start", start.job_id)
            self.channel.send(Failed(start.job_id, "the worker hit an unexpected error"))
            return
        now = time.monotonic()
        self.running[handle] = _Running(start, began=now, last_sent=now)
        self._update_busy()
        size = (start.width, start.height)
        if self.compile_networks and size not in self.compiled_sizes:
            self.compiled_sizes.add(size)
            reason = f"compiling the networks for {start.width}x{start.height}"
            self.channel.send(Preparing(start.job_id, reason))

    def _step(self) -> None:
        try:
            finished = self.batch.step(self._on_step)
        except Exception as error:
            if isinstance(error, torch.OutOfMemoryError):
                reason = "the GPU ran out of memory; try a smaller size"
                if len(self.running) > 1:
                    reason += " or ask the operator to lower [worker] max_batch"
            else:
                log.exception("a step of jobs %s failed", list(self.busy))
                reason = "the worker hit an unexpected error"
            for entry in self.running.values():
                self.channel.send(Failed(entry.start.job_id, reason))
            self.running.clear()
            self._update_busy()
            self.batch = self.engine.batch()
            if self.engine.device.type == "cuda":
                torch.cuda.empty_cache()
            return
        for handle, result in finished.items():
            self._done(handle, result)

    def _done(self, handle: int, result: DrawResult) -> None:
        start = self.running.pop(handle).start
        self._update_busy()
        self.cancelled.discard(start.job_id)
        latent = self.latents / f"{start.job_id}.pt"
        temporary = latent.with_suffix(".tmp")
        torch.save(result.logits, temporary)
        os.replace(temporary, latent)
        self.channel.send(
            Finished(
                job_id=start.job_id,
                steps=result.steps,
                seconds=result.timings.loop_s,
                cancelled=result.cancelled,
                png_b64=png_to_b64(png_bytes(result.image, png_metadata(result))),
                latent=str(latent),
            )
        )

    def _update_busy(self) -> None:
        self.busy = tuple(entry.start.job_id for entry in self.running.values())

    def _on_step(self, info: StepInfo) -> None:
        entry = self.running[info.job_index]
        now = time.monotonic()
        if entry.first_step_done is None:
            entry.first_step_done = now
        if now - entry.last_sent < entry.start.progress_every_s and info.step != info.total:
            return
        entry.last_sent = now
        if info.step > 1:
            rate = (info.step - 1) / max(now - entry.first_step_done, 1e-9)
        else:
            rate = 1 / max(now - entry.began, 1e-9)
        self.channel.send(
            Progress(
                job_id=entry.start.job_id,
                step=info.step,
                total=info.total,
                loss=float(info.loss.item()),
                iterations_per_second=rate,
                png_b64=png_to_b64(png_bytes(to_pil(info.image))),
            )
        )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m generator.worker", description=__doc__)
    add_model_options(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--latents", type=Path, required=True, help="folder for final latents")
    parser.add_argument("--cutouts", type=int, default=32)
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="compile the networks")
    parser.add_argument("--max-batch", type=int, default=1, help="jobs drawn together (default 1)")
    parser.add_argument("--relaxation", choices=RELAXATIONS, default="codebook")
    add_threads_option(parser, reserve=WORKER_RESERVED_CORES)
    add_cuda_graphs_option(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    threads = choose_threads(args.threads, reserve=WORKER_RESERVED_CORES)
    configure_torch(threads)
    log.info("torch uses %d CPU thread(s)", threads)
    channel = _Channel(sys.stdout)
    try:
        models = models_from_args(args)
    except GeneratorError as error:
        log.error("cannot load the models: %s", error)
        return 1
    args.latents.mkdir(parents=True, exist_ok=True)
    worker = Worker(
        models, channel, args.latents, cutouts=args.cutouts, precision=args.precision,
        checkpointing=args.checkpointing, compile_networks=args.compile,
        relaxation=args.relaxation, cuda_graphs=args.cuda_graphs,
        max_batch=max(1, args.max_batch),
    )  # fmt: skip
    threading.Thread(target=worker.read_commands, args=(sys.stdin,), daemon=True).start()
    threading.Thread(target=worker.beat, daemon=True).start()
    channel.send(Ready(device=str(models.device)))
    worker.serve()
    return 0


if __name__ == "__main__":
    code = main()
    # Leave without the interpreter's teardown, as multiprocessing's children do: here torch's
    # static destructors abort the process now and then ("terminate called without an active
    # exception", seen in about one exit in three with one torch thread), which the bot would
    # log as a crash. Nothing is left to clean up: every file is written atomically.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
