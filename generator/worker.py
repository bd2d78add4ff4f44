"""The worker process: loads the models once, then draws jobs one at a time for the bot.

It reads protocol lines on stdin and writes them on stdout; everything else (logs, tracebacks)
goes to stderr. A reader thread takes cancellations while a job runs, and a heartbeat thread
keeps telling the bot the worker is alive. End of stdin means the bot is gone: the worker exits.

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
from pathlib import Path
from typing import TextIO

import torch

from generator.cli import add_model_options, models_from_args
from generator.engine import Engine, StepCallback, StepInfo, to_pil
from generator.errors import GeneratorError
from generator.loaders import Models
from generator.output import png_bytes, png_metadata
from generator.protocol import (
    CancelJob,
    Failed,
    Finished,
    Heartbeat,
    Message,
    Progress,
    ProtocolError,
    Ready,
    StartJob,
    decode,
    encode,
    png_to_b64,
)
from generator.settings import PRECISIONS, DrawSettings, Job

log = logging.getLogger("pseudo_dalle.worker")
HEARTBEAT_S = 1.0


class _Channel:
    """Protocol lines to the bot, one writer at a time."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        with self._lock:
            self._stream.write(encode(message))
            self._stream.flush()


class Worker:
    def __init__(
        self, models: Models, channel: _Channel, latents: Path, cutouts: int, precision: str
    ) -> None:
        self.models = models
        self.channel = channel
        self.latents = latents
        self.cutouts = cutouts
        self.precision = precision
        self.jobs: queue.Queue[StartJob | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.current: int | None = None

    def read_commands(self, stream: TextIO) -> None:
        """Reader thread: queue jobs, note cancellations; end of input ends the worker."""
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
        self.jobs.put(None)

    def beat(self) -> None:
        """Heartbeat thread."""
        while True:
            self.channel.send(Heartbeat(busy_job_id=self.current))
            time.sleep(HEARTBEAT_S)

    def serve(self) -> None:
        while (start := self.jobs.get()) is not None:
            self.current = start.job_id
            try:
                self.channel.send(self.run(start))
            finally:
                self.current = None
                self.cancelled.discard(start.job_id)

    def run(self, start: StartJob) -> Message:
        try:
            settings = DrawSettings(
                width=start.width, height=start.height, cutouts=self.cutouts,
                precision=self.precision,
            )  # fmt: skip
            init = None
            if start.init_latent:
                init = torch.load(start.init_latent, map_location="cpu", weights_only=True)
            job = Job(start.prompt, start.seed, start.iterations, init_logits=init)
            engine = Engine(self.models, settings)
            result = engine.draw(
                job, self._progress(start), lambda _: start.job_id in self.cancelled
            )
        except GeneratorError as error:
            return Failed(start.job_id, str(error))
        except torch.OutOfMemoryError:
            return Failed(start.job_id, "the GPU ran out of memory; try a smaller size")
        except Exception:
            log.exception("job %s failed", start.job_id)
            return Failed(start.job_id, "the worker hit an unexpected error")
        latent = self.latents / f"{start.job_id}.pt"
        temporary = latent.with_suffix(".tmp")
        torch.save(result.logits, temporary)
        os.replace(temporary, latent)
        return Finished(
            job_id=start.job_id,
            steps=result.steps,
            seconds=result.timings.loop_s,
            cancelled=result.cancelled,
            png_b64=png_to_b64(png_bytes(result.image, png_metadata(result))),
            latent=str(latent),
        )

    def _progress(self, start: StartJob) -> StepCallback:
        began = time.monotonic()
        last_sent = began

        def on_step(info: StepInfo) -> None:
            nonlocal last_sent
            now = time.monotonic()
            if now - last_sent < start.progress_every_s and info.step != info.total:
                return
            last_sent = now
            self.channel.send(
                Progress(
                    job_id=start.job_id,
                    step=info.step,
                    total=info.total,
                    loss=float(info.loss.item()),
                    iterations_per_second=info.step / max(now - began, 1e-9),
                    png_b64=png_to_b64(png_bytes(to_pil(info.image))),
                )
            )

        return on_step


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m generator.worker", description=__doc__)
    add_model_options(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--latents", type=Path, required=True, help="folder for final latents")
    parser.add_argument("--cutouts", type=int, default=32)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    channel = _Channel(sys.stdout)
    try:
        models = models_from_args(args)
    except GeneratorError as error:
        log.error("cannot load the models: %s", error)
        return 1
    args.latents.mkdir(parents=True, exist_ok=True)
    worker = Worker(models, channel, args.latents, args.cutouts, args.precision)
    threading.Thread(target=worker.read_commands, args=(sys.stdin,), daemon=True).start()
    threading.Thread(target=worker.beat, daemon=True).start()
    channel.send(Ready(device=str(models.device)))
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
