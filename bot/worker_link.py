"""The bot's side of the worker process: start it, talk to it, notice when it dies or hangs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from generator.protocol import Heartbeat, Message, ProtocolError, Ready, decode, encode

log = logging.getLogger("pseudo_dalle.worker_link")
READY_TIMEOUT_S = 1800.0  # the first start may download several hundred MB of weights
SILENCE_LIMIT_S = 30.0  # no heartbeat for this long means the worker hangs


@dataclass(frozen=True)
class WorkerExited:
    """The worker process ended; `code` is its exit status (None if it was killed hung)."""

    code: int | None


class WorkerLink:
    """One worker process at a time; `messages` yields its protocol messages and exits."""

    def __init__(self, arguments: Sequence[str]) -> None:
        self.arguments = list(arguments)
        self.process: asyncio.subprocess.Process | None = None
        self.messages: asyncio.Queue[Message | WorkerExited] = asyncio.Queue()
        self.device = ""
        self._reader: asyncio.Task[None] | None = None
        self._last_heartbeat = 0.0
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start the worker and wait until its models are loaded."""
        self.messages = asyncio.Queue()
        self._stopping = False
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "generator.worker", *self.arguments,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=64 * 2**20,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read(self.process), name="worker-reader")
        first = await asyncio.wait_for(self.messages.get(), READY_TIMEOUT_S)
        if isinstance(first, WorkerExited):
            raise RuntimeError(f"the worker exited while loading models (status {first.code})")
        if not isinstance(first, Ready):
            raise RuntimeError(f"the worker said {first.kind} before it was ready")
        self.device = first.device
        log.info("worker %s ready on %s", self.process.pid, self.device)

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        self._last_heartbeat = loop.time()
        while True:
            try:
                line = await asyncio.wait_for(process.stdout.readline(), SILENCE_LIMIT_S)
            except TimeoutError:
                if loop.time() - self._last_heartbeat > SILENCE_LIMIT_S:
                    log.error(
                        "worker %s silent for %.0f s; killing it", process.pid, SILENCE_LIMIT_S
                    )
                    process.kill()
                continue
            if not line:
                break
            try:
                message = decode(line)
            except ProtocolError as error:
                log.error("ignoring a bad line from the worker: %s", error)
                continue
            self._last_heartbeat = loop.time()
            if not isinstance(message, Heartbeat):
                await self.messages.put(message)
        code = await process.wait()
        level = logging.INFO if self._stopping else logging.WARNING
        log.log(level, "worker %s exited with status %s", process.pid, code)
        await self.messages.put(WorkerExited(code))

    async def send(self, message: Message) -> None:
        if not self.alive:
            return
        assert self.process is not None
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(encode(message).encode())
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            log.warning("could not send %s: the worker is gone", message.kind)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Close the worker's input (it exits at its next step), then make sure it is gone."""
        process = self.process
        if process is None:
            return
        self._stopping = True
        if process.returncode is None and process.stdin is not None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
