"""The worker as the bot's child process: loads the models once, then draws the bot's jobs.

It reads protocol lines on stdin and writes them on stdout; everything else (logs, tracebacks)
goes to stderr. The first line it reads is a `Configure` message: its name, which models to
load and how to draw; it answers `Ready` once the models are loaded. A reader thread takes new
jobs and cancellations while jobs run (both act at the next step boundary), and a heartbeat
thread keeps telling the bot the worker is alive. End of stdin, or a closed stdout, means the
bot is gone (it stopped, or it died and the pipes closed with it): the worker exits at the next
step boundary, whatever it is drawing. With `--metrics-bind HOST:PORT` (the bot passes its
`[worker] metrics_bind`) it serves its Prometheus metrics there (`generator.worker.metrics`).

    python -m generator.worker   (then a Configure line on stdin; the bot sends it)
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from generator.contract.errors import GeneratorError
from generator.contract.protocol import Configure, Message, ProtocolError, Ready, decode, encode
from generator.contract.threads import WORKER_RESERVED_CORES, choose_threads
from generator.method.runtime import configure_torch
from generator.models.loaders import load_models
from generator.worker.core import Worker, picture_encoder_for, text_encoder_for
from generator.worker.metrics import WorkerMetrics
from generator.worker.options import add_metrics_option

log = logging.getLogger("pseudo_dalle.worker")


class _Channel:
    """Protocol lines to the bot on a stream, one writer at a time. `gone` is set when the bot
    is."""

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


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m generator.worker", description=__doc__)
    add_metrics_option(parser, environ=False)  # the bot passes its [worker] metrics_bind
    return parser.parse_args(argv)


def _configuration(stream: TextIO) -> Configure | None:
    """The first line: what to load and how to draw (None, logged, for anything else)."""
    line = stream.readline()
    if not line:
        log.error("no configuration arrived: the bot closed the connection first")
        return None
    try:
        message = decode(line)
    except ProtocolError as error:
        log.error("the first line is not a configuration: %s", error)
        return None
    if not isinstance(message, Configure):
        log.error("the first line is a %s message, not a configuration", message.kind)
        return None
    return message


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    configure = _configuration(sys.stdin)
    if configure is None:
        return 2
    options, choice = configure.options, configure.models
    threads = choose_threads(options.threads, reserve=WORKER_RESERVED_CORES)
    configure_torch(threads)
    log.info("worker %s: torch uses %d CPU thread(s)", configure.worker_id, threads)
    channel = _Channel(sys.stdout)
    cache_dir = Path(choice.cache_dir) if choice.cache_dir else None
    try:
        models = load_models(
            choice.clip_models(),
            choice.decoder,
            device=choice.device,
            cache_dir=cache_dir,
            offline=choice.offline,
        )
        multilingual = text_encoder_for(choice, models, cache_dir)
    except GeneratorError as error:
        log.error("cannot load the models: %s", error)
        return 1
    encoder = picture_encoder_for(choice, models.device, cache_dir)
    metrics = WorkerMetrics(models.device) if args.metrics_bind else None
    worker = Worker(models, channel, options, multilingual, encoder, metrics=metrics)
    server = metrics.serve(args.metrics_bind) if metrics is not None else None
    threading.Thread(target=worker.read_commands, args=(sys.stdin,), daemon=True).start()
    threading.Thread(target=worker.beat, args=(configure.worker_id,), daemon=True).start()
    channel.send(
        Ready(
            worker_id=configure.worker_id,
            device=str(models.device),
            places=worker.max_batch,
            host=socket.gethostname(),
            pid=os.getpid(),
            clip_models=list(models.clip_names),
        )
    )
    try:
        worker.serve()
    finally:
        if server is not None:
            server.close()
    return 0
