"""The Redis transport: any number of `pseudo-dalle worker` processes, on any hosts.

The bot publishes the workers' settings, adds each dispatched job to the `jobs` stream (the
scheduler dispatches only while some worker has a free place), marks cancelled jobs in the
`cancelled` set, and reads the workers' messages from the `events` stream through its own
consumer group (so what a worker said while the bot was away is read when it is back) and their
pictures from the `progress` stream. Workers are known by their presence keys: one that is gone
for `GONE_AFTER_POLLS` polls in a row, while Redis answers, has left; Redis hands its jobs to
the next worker with a free place (see `generator.worker.redis_streams`).

Whatever Redis does, the bot keeps going: what it sends waits in order until Redis takes it,
and every loop tries again with a growing delay, saying why in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError, ResponseError

from bot.tasks import OwnedTask
from bot.workers.transport import FromWorker, WorkerEvent, WorkerInfo, WorkerJoined, WorkerLeft
from generator.contract.protocol import (
    CheckMeaning,
    Failed,
    Finished,
    ProtocolError,
    SharedSettings,
    StartJob,
    WorkerPresence,
    decode,
    encode,
)
from generator.contract.redis_keys import (
    BOT_GROUP,
    CHECK_GROUP,
    CHECKS_KEPT,
    JOB_GROUP,
    READ_BLOCK_MS,
    RETRY_FIRST_S,
    RETRY_MAX_S,
    Keys,
    safe_url,
)

log = logging.getLogger("pseudo_dalle.redis_workers")
POLL_S = 1.0
GONE_AFTER_POLLS = 3
CANCELLED_KEPT_S = 7 * 86400
FORGET_AFTER_MS = 60_000  # a consumer this idle, gone and holding nothing is removed
BOT_CONSUMER = "bot"


class RedisWorkers:
    """A `WorkerTransport` over Redis Streams."""

    def __init__(self, url: str, settings: SharedSettings, *, prefix: str = Keys.prefix) -> None:
        self.url = url
        self.settings = settings
        self.keys = Keys(prefix)
        self.client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, socket_timeout=15
        )
        self._events: asyncio.Queue[WorkerEvent] = asyncio.Queue()
        self._outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._workers: dict[str, WorkerInfo] = {}
        self._missing: dict[str, int] = {}
        self._connected = asyncio.Event()
        self._reconciled = asyncio.Event()  # set once the scheduler knows the held jobs
        self._tasks: list[OwnedTask] = []

    @property
    def keeps_jobs(self) -> bool:
        return True

    def workers(self) -> list[WorkerInfo]:
        return sorted(self._workers.values(), key=lambda worker: worker.id)

    def start(self) -> None:
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "redis-setup": self._setup,
            "redis-outbox": self._send_outbox,
            "redis-events": self._read_events,
            "redis-progress": self._read_progress,
            "redis-presence": self._poll_presence,
        }
        for name, loop in loops.items():
            task = OwnedTask(name, partial(self._retrying, name, loop))
            task.start()
            self._tasks.append(task)

    async def stop(self, grace_s: float) -> None:
        """Stop listening; the workers go on with their jobs, which the next bot picks up.
        A loop that does not end within `grace_s` (a Redis call that does not give way to the
        cancellation) is left behind rather than holding the shutdown up."""
        stopped = await asyncio.gather(*(task.stop(grace_s) for task in self._tasks))
        stuck = sorted(t.name for t, done in zip(self._tasks, stopped, strict=True) if not done)
        if stuck:
            log.warning(
                "%s did not stop within %.0f s; leaving without them", ", ".join(stuck), grace_s
            )
        await self.client.aclose()

    async def held_jobs(self) -> set[int]:
        """Jobs dispatched and not yet seen to their end: still in the `jobs` stream (waiting
        or being drawn), or with a message in the `events` stream the bot has yet to read (a
        job that ended while the bot was away)."""
        await self._connected.wait()
        held: set[int] = set()
        for stream in (self.keys.jobs, self.keys.events):
            for _, fields in await self.client.xrange(stream):
                try:
                    message = decode(fields.get("line", ""))
                except ProtocolError:
                    continue
                job_id = getattr(message, "job_id", None)
                if isinstance(job_id, int):
                    held.add(job_id)
        # Only now may the workers' messages be read: a message read before would be gone from
        # the events stream, and its job would look lost.
        self._reconciled.set()
        return held

    async def dispatch(self, job: StartJob) -> str | None:
        await self._outbox.put(("dispatch", job))
        return None  # whichever worker takes it says so

    async def cancel(self, job_id: int, worker_id: str | None) -> None:
        await self._outbox.put(("cancel", job_id))

    async def check(self, message: CheckMeaning) -> None:
        await self._outbox.put(("check", message))

    async def receive(self) -> WorkerEvent:
        return await self._events.get()

    # -- the loops ---------------------------------------------------------------------------
    async def _retrying(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop` until it returns; when Redis fails it, wait (growing) and run it again."""
        delay = RETRY_FIRST_S
        while True:
            try:
                await loop()
                return
            except (RedisError, OSError) as error:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Stopping: redis-py may turn a cancelled read into a timeout error.
                    raise asyncio.CancelledError from error
                self._connected.clear()
                log.warning(
                    "%s: cannot reach Redis at %s (%s); trying again in %.0f s",
                    name,
                    safe_url(self.url),
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                if name != "redis-setup":
                    await self._connected.wait()
                    delay = RETRY_FIRST_S

    async def _setup(self) -> None:
        """Publish the settings and make sure the streams and groups exist; again whenever Redis
        comes back (it may have restarted empty)."""
        while True:
            await self.client.set(self.keys.settings, self.settings.model_dump_json())
            groups = (
                (self.keys.jobs, JOB_GROUP),
                (self.keys.events, BOT_GROUP),
                (self.keys.checks, CHECK_GROUP),
            )
            for stream, group in groups:
                try:
                    await self.client.xgroup_create(stream, group, id="0", mkstream=True)
                except ResponseError as error:
                    if "BUSYGROUP" not in str(error):
                        raise
            if not self._connected.is_set():
                log.info("connected to Redis at %s", safe_url(self.url))
                self._connected.set()
            await asyncio.sleep(POLL_S * 5)

    async def _send_outbox(self) -> None:
        """Deliver dispatches, cancellations and prompts to check in order, each until Redis
        takes it."""
        pending: tuple[str, Any] | None = None
        while True:
            await self._connected.wait()
            pending = pending or await self._outbox.get()
            kind, value = pending
            if kind == "dispatch":
                await self.client.xadd(self.keys.jobs, {"line": encode(value)})
            elif kind == "check":
                await self.client.xadd(
                    self.keys.checks,
                    {"line": encode(value)},
                    maxlen=CHECKS_KEPT,
                    approximate=True,
                )
            else:
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.sadd(self.keys.cancelled, str(value))
                    pipe.expire(self.keys.cancelled, CANCELLED_KEPT_S)
                    await pipe.execute()
            pending = None

    async def _read_events(self) -> None:
        """The workers' messages, in order: first any read before and not acknowledged (the bot
        stopped in between), then new ones; each acknowledged and deleted once passed on."""
        await self._reconciled.wait()
        await self._connected.wait()
        backlog = True
        while True:
            reply = await self.client.xreadgroup(
                BOT_GROUP,
                BOT_CONSUMER,
                {self.keys.events: "0" if backlog else ">"},
                count=100,
                block=None if backlog else READ_BLOCK_MS,
            )
            entries = reply[0][1] if reply else []
            if backlog and not entries:
                backlog = False
                continue
            for entry, fields in entries:
                ended = await self._pass_on(fields)
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.xack(self.keys.events, BOT_GROUP, entry)
                    pipe.xdel(self.keys.events, entry)
                    if ended is not None:
                        pipe.srem(self.keys.cancelled, str(ended))
                    await pipe.execute()

    async def _read_progress(self) -> None:
        """Progress pictures: only those sent from now on matter."""
        await self._connected.wait()
        last = "$"
        while True:
            reply = await self.client.xread({self.keys.progress: last}, block=READ_BLOCK_MS)
            for entry, fields in reply[0][1] if reply else []:
                last = entry
                await self._pass_on(fields)

    async def _pass_on(self, fields: dict[str, str]) -> int | None:
        """Hand a worker's message to the scheduler; the job's id if the message ends it."""
        try:
            message = decode(fields.get("line", ""))
        except ProtocolError as error:
            log.error("ignoring a bad message from worker %s: %s", fields.get("worker"), error)
            return None
        await self._events.put(FromWorker(fields.get("worker", ""), message))
        return message.job_id if isinstance(message, Finished | Failed) else None

    async def _poll_presence(self) -> None:
        """Workers join when their presence key appears and leave when it has been gone for
        a few polls in a row."""
        await self._connected.wait()
        while True:
            present: dict[str, WorkerInfo] = {}
            async for key in self.client.scan_iter(match=self.keys.workers, count=100):
                worker = self._presence(await self.client.get(key))
                if worker is not None:
                    present[worker.id] = worker
            for worker in present.values():
                self._missing.pop(worker.id, None)
                if worker.id not in self._workers:
                    log.info(
                        "worker %s joined (%s, %d place(s))",
                        worker.id,
                        worker.device,
                        worker.places,
                    )
                    await self._events.put(WorkerJoined(worker))
                self._workers[worker.id] = worker
            for worker_id in [w for w in self._workers if w not in present]:
                self._missing[worker_id] = self._missing.get(worker_id, 0) + 1
                if self._missing[worker_id] >= GONE_AFTER_POLLS:
                    del self._workers[worker_id], self._missing[worker_id]
                    log.warning("worker %s is gone", worker_id)
                    await self._events.put(WorkerLeft(worker_id, "its presence key expired"))
            await self._forget_gone_consumers(present)
            await asyncio.sleep(POLL_S)

    async def _forget_gone_consumers(self, present: dict[str, WorkerInfo]) -> None:
        """Workers that left and hold no job are removed from the consumer group, so that it
        does not grow with every worker ever started."""
        for consumer in await self.client.xinfo_consumers(self.keys.jobs, JOB_GROUP):
            name = str(consumer["name"])
            idle_ms = int(consumer.get("inactive", consumer.get("idle", 0)))
            if name not in present and not int(consumer["pending"]) and idle_ms > FORGET_AFTER_MS:
                await self.client.xgroup_delconsumer(self.keys.jobs, JOB_GROUP, name)

    @staticmethod
    def _presence(raw: str | None) -> WorkerInfo | None:
        if raw is None:
            return None
        try:
            presence = WorkerPresence.model_validate_json(raw)
        except ValidationError as error:
            log.error("ignoring a worker's unreadable presence key: %s", error)
            return None
        return WorkerInfo(
            id=presence.id,
            device=presence.device,
            places=presence.places,
            host=presence.host,
            pid=presence.pid,
            clip_models=tuple(presence.clip_models),
        )
