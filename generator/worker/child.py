"""The worker as the bot's child process: loads the models once, then draws the bot's jobs.

It reads protocol lines on stdin and writes them on stdout; everything else (logs, tracebacks)
goes to stderr. The first line it reads is a `Configure` message: its name, which models to
load and how to draw; it answers `Ready` once the models are loaded. A reader thread hands new
jobs and cancellations to the core (both act at the next step boundary), and a heartbeat
thread keeps telling the bot the worker is alive and what it draws. End of stdin, or a closed
stdout, means the bot is gone (it stopped, or it died and the pipes closed with it): the worker
exits at the next step boundary, whatever it is drawing. With `--metrics-bind HOST:PORT` (the
bot passes its `[worker] metrics_bind`) it serves its Prometheus metrics there
(`generator.worker.metrics`).

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
from generator.contract.protocol import (
    CancelJob,
    CheckMeaning,
    Configure,
    Heartbeat,
    Message,
    ProtocolError,
    Ready,
    StartJob,
    decode,
    encode,
)
from generator.worker.build import build_worker, set_threads
from generator.worker.core import Worker
from generator.worker.options import add_metrics_option

log = logging.getLogger("pseudo_dalle.worker")
HEARTBEAT_S = 1.0


class _Stdout:
    """Protocol lines to the bot on a stream, one writer at a time. `gone` is set when the bot
    is: its end of the stream closed, or it closed ours (end of stdin)."""

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


def read_commands(stream: TextIO, worker: Worker, gone: threading.Event) -> None:
    """Reader thread: hand jobs, cancellations and prompts to check to `worker`; end of input
    means the bot is gone."""
    try:
        for line in stream:
            try:
                message = decode(line)
            except ProtocolError as error:
                log.error("ignoring a bad line from the bot: %s", error)
                continue
            if isinstance(message, StartJob):
                worker.submit(message)
            elif isinstance(message, CancelJob):
                worker.cancel(message.job_id)
            elif isinstance(message, CheckMeaning):
                worker.check(message)
            else:
                log.error("ignoring a %s message from the bot", message.kind)
    finally:
        gone.set()


def beat(channel: _Stdout, worker: Worker, worker_id: str) -> None:
    """Heartbeat thread: every `HEARTBEAT_S` while the bot is there; once it is gone, close the
    worker (it returns at its next step boundary)."""
    while not channel.gone.is_set():
        channel.send(Heartbeat(worker_id=worker_id, busy_job_ids=list(worker.busy)))
        channel.gone.wait(HEARTBEAT_S)
    worker.close()


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
    choice = configure.models
    set_threads(configure.options)
    channel = _Stdout(sys.stdout)
    try:
        worker, server = build_worker(
            choice,
            configure.options,
            channel,
            device=choice.device,
            cache_dir=Path(choice.cache_dir) if choice.cache_dir else None,
            metrics_bind=args.metrics_bind,
        )
    except GeneratorError as error:
        log.error("cannot load the models: %s", error)
        return 1
    threading.Thread(
        target=read_commands, args=(sys.stdin, worker, channel.gone), daemon=True, name="read"
    ).start()
    threading.Thread(
        target=beat, args=(channel, worker, configure.worker_id), daemon=True, name="beat"
    ).start()
    channel.send(
        Ready(
            worker_id=configure.worker_id,
            device=str(worker.engine.device),
            places=worker.max_batch,
            host=socket.gethostname(),
            pid=os.getpid(),
            clip_models=list(worker.engine.models.clip_names),
        )
    )
    try:
        worker.serve()
    finally:
        if server is not None:
            server.close()
    return 0
