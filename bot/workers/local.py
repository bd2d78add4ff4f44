"""The default transport: one worker process on this host, talking over its stdin and stdout.

An owned task starts the worker, tells it its settings (a `Configure` line), waits until its
models are loaded, then reads what it says. When the worker exits or stays silent too long (it
is then killed), it leaves, and the task starts a new one after `restart_delay_s`.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.tasks import OwnedTask
from bot.workers.transport import FromWorker, WorkerEvent, WorkerInfo, WorkerJoined, WorkerLeft
from generator.contract.protocol import (
    CancelJob,
    CheckMeaning,
    Configure,
    Heartbeat,
    ProtocolError,
    Ready,
    StartJob,
    decode,
    encode,
)

log = logging.getLogger("pseudo_dalle.local_worker")
READY_TIMEOUT_S = 1800.0  # the first start may download several hundred MB of weights
SILENCE_LIMIT_S = 30.0  # no heartbeat for this long means the worker hangs
LINE_LIMIT = 64 * 2**20  # a progress line carries a base64 PNG


class WorkerStartError(Exception):
    """The worker could not get ready; the message says why."""


class LocalWorker:
    """A `WorkerTransport` with one child process, restarted whenever it stops."""

    def __init__(
        self, configure: Configure, *, restart_delay_s: float, metrics_bind: str = ""
    ) -> None:
        self.configure = configure
        self.restart_delay_s = restart_delay_s
        # On the worker's command line, as `pseudo-dalle worker` takes it, not in `Configure`:
        # where a process listens is not how it draws, and the protocol stays as it is.
        self._arguments = ("--metrics-bind", metrics_bind) if metrics_bind else ()
        self._events: asyncio.Queue[WorkerEvent] = asyncio.Queue()
        self._process: asyncio.subprocess.Process | None = None
        self._ready: WorkerInfo | None = None
        self._task = OwnedTask("local-worker", self._supervise)

    @property
    def keeps_jobs(self) -> bool:
        return False  # its jobs end with the process

    def start(self) -> None:
        self._task.start()

    async def held_jobs(self) -> set[int]:
        return set()  # a new bot has a new worker

    async def dispatch(self, job: StartJob) -> str | None:
        ready = self._ready
        await self._send(ready.id if ready is not None else "", job)
        return ready.id if ready is not None else None

    async def cancel(self, job_id: int, worker_id: str | None) -> None:
        await self._send(worker_id or "", CancelJob(job_id))

    async def check(self, message: CheckMeaning) -> None:
        ready = self._ready
        await self._send(ready.id if ready is not None else "", message)

    def workers(self) -> list[WorkerInfo]:
        return [self._ready] if self._ready is not None else []

    async def receive(self) -> WorkerEvent:
        return await self._events.get()

    async def _send(self, worker_id: str, message: StartJob | CancelJob | CheckMeaning) -> None:
        process = self._process
        if self._ready is None or worker_id != self._ready.id or process is None:
            log.warning("not sending %s: worker %s is not running", message.kind, worker_id)
            return
        await self._write(process, message)

    async def stop(self, grace_s: float) -> None:
        """Close the worker's input (it exits at its next step), then make sure it is gone."""
        await self._task.stop()
        process = self._process
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                process.kill()
                await process.wait()
        if process is not None:
            log.info("worker %s exited with status %s", process.pid, process.returncode)

    async def _supervise(self) -> None:
        while True:
            try:
                process = await self._launch()
            except (WorkerStartError, TimeoutError, OSError) as error:
                log.error("could not start the worker: %s; trying again", error or "timed out")
            else:
                code = await self._listen(process)
                self._ready = None
                log.warning("worker %s exited with status %s", process.pid, code)
                await self._events.put(WorkerLeft(self.configure.worker_id, f"exit status {code}"))
            await self._kill()
            await asyncio.sleep(self.restart_delay_s)

    async def _launch(self) -> asyncio.subprocess.Process:
        """Start the worker, configure it and wait until its models are loaded."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "generator.worker",
            *self._arguments,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
        )
        self._process = process
        await self._write(process, self.configure)
        ready = await asyncio.wait_for(self._first_word(process), READY_TIMEOUT_S)
        self._ready = WorkerInfo(
            id=ready.worker_id,
            device=ready.device,
            places=ready.places,
            host=ready.host,
            pid=ready.pid,
            clip_models=tuple(ready.clip_models),
        )
        log.info("worker %s (pid %s) ready on %s", ready.worker_id, process.pid, ready.device)
        await self._events.put(WorkerJoined(self._ready))
        return process

    async def _first_word(self, process: asyncio.subprocess.Process) -> Ready:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                code = await process.wait()
                raise WorkerStartError(f"the worker exited while loading models (status {code})")
            try:
                message = decode(line)
            except ProtocolError as error:
                log.error("ignoring a bad line from the worker: %s", error)
                continue
            if isinstance(message, Ready):
                return message
            if not isinstance(message, Heartbeat):
                raise WorkerStartError(f"the worker said {message.kind} before it was ready")

    async def _listen(self, process: asyncio.subprocess.Process) -> int:
        """Pass on what the worker says until it exits (killing it if it falls silent)."""
        assert process.stdout is not None
        worker_id = self.configure.worker_id
        while True:
            try:
                line = await asyncio.wait_for(process.stdout.readline(), SILENCE_LIMIT_S)
            except TimeoutError:
                log.error("worker %s silent for %.0f s; killing it", process.pid, SILENCE_LIMIT_S)
                process.kill()
                continue
            if not line:
                return await process.wait()
            try:
                message = decode(line)
            except ProtocolError as error:
                log.error("ignoring a bad line from the worker: %s", error)
                continue
            if not isinstance(message, Heartbeat):
                await self._events.put(FromWorker(worker_id, message))

    async def _write(
        self,
        process: asyncio.subprocess.Process,
        message: Configure | StartJob | CancelJob | CheckMeaning,
    ) -> None:
        if process.stdin is None or process.returncode is not None:
            return
        try:
            process.stdin.write(encode(message).encode())
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            log.warning("could not send %s: the worker is gone", message.kind)

    async def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
