"""A worker that takes its jobs from Redis, on this host or any other: `pseudo-dalle worker`.

The bot stays the one scheduler: it adds a job to the `jobs` stream only when some worker has a
free place. Delivery, acknowledgement and handing a lost worker's job to another come from Redis
Streams' consumer groups:

- a worker with a free place first claims a job that another worker took and stopped renewing
  for `LEASE_MS` (XAUTOCLAIM: that worker is gone), else reads a new one (XREADGROUP);
- while it draws, it renews its jobs every `RENEW_S` (XCLAIM of its own entries) and finds any
  that another worker has claimed in the meantime (then it drops them without a word);
- the final message and the acknowledgement (XACK, XDEL) go in one transaction, so a job is
  either finished or still pending, never lost;
- the bot cancels a job by adding its id to the `cancelled` set, which workers check.

Messages to the bot go to the `events` stream (read by the bot's consumer group, kept until the
bot has read them, also while it restarts) and progress pictures to the `progress` stream, which
keeps only the latest few hundred. A worker announces itself with a key that expires unless it
is renewed every `RENEW_S`. Whatever Redis does (not there yet, restarted), the worker
tries again with a growing delay and says why in its log; messages wait in memory meanwhile.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import redis
from pydantic import ValidationError

from generator.contract.errors import GeneratorError
from generator.contract.protocol import (
    CheckMeaning,
    Failed,
    Finished,
    Heartbeat,
    Message,
    Progress,
    ProtocolError,
    SharedSettings,
    StartJob,
    Taken,
    WorkerPresence,
    decode,
    encode,
)
from generator.contract.redis_keys import (
    CHECK_GROUP,
    FLUSH_S,
    JOB_GROUP,
    LEASE_MS,
    PRESENCE_TTL_MS,
    PROGRESS_KEPT,
    READ_BLOCK_MS,
    RENEW_S,
    RETRY_FIRST_S,
    RETRY_MAX_S,
    Keys,
    safe_url,
)
from generator.worker.devices import claim_device, local_gpus
from generator.worker.options import add_redis_worker_options
from generator.worker.process import leave

if TYPE_CHECKING:
    from generator.worker.core import Worker

log = logging.getLogger("pseudo_dalle.redis_worker")


class Backoff:
    """Growing waits between tries: 1 s doubling up to 30 s; `reset` after a success."""

    def __init__(self) -> None:
        self.delay = RETRY_FIRST_S

    def wait(self, what: str, error: BaseException, stop: threading.Event) -> None:
        log.warning("%s (%s); trying again in %.0f s", what, error, self.delay)
        stop.wait(self.delay)
        self.delay = min(self.delay * 2, RETRY_MAX_S)

    def reset(self) -> None:
        self.delay = RETRY_FIRST_S


class RedisChannel:
    """The worker's messages to the bot through Redis, and the jobs it holds there.

    `send` never blocks on Redis: progress is written at once or dropped (a newer picture
    follows), everything else waits in order in an outbox that a thread delivers."""

    def __init__(self, client: redis.Redis, keys: Keys, worker_id: str, url: str) -> None:
        self.client = client
        self.keys = keys
        self.worker_id = worker_id
        self.url = safe_url(url)
        self.gone = threading.Event()
        self.entries: dict[int, str] = {}  # job id -> its entry in the jobs stream
        self._lock = threading.Lock()
        self._outbox: queue.Queue[Message] = queue.Queue()

    def send(self, message: Message) -> None:
        if isinstance(message, Heartbeat):
            return  # the presence key says the worker is alive
        if isinstance(message, Progress):
            try:
                self.client.xadd(
                    self.keys.progress,
                    self._fields(message),
                    maxlen=PROGRESS_KEPT,
                    approximate=True,
                )
            except redis.RedisError as error:
                log.debug("progress of job %s not sent: %s", message.job_id, error)
            return
        self._outbox.put(message)

    def holds(self) -> dict[int, str]:
        with self._lock:
            return dict(self.entries)

    def take(self, job_id: int, entry: str) -> None:
        with self._lock:
            self.entries[job_id] = entry

    def release(self, job_id: int) -> None:
        with self._lock:
            self.entries.pop(job_id, None)

    def deliver(self) -> None:
        """Thread: deliver the outbox in order; each message until Redis takes it."""
        backoff = Backoff()
        while True:
            message = self._outbox.get()
            while True:
                try:
                    self._deliver(message)
                    backoff.reset()
                    break
                except redis.RedisError as error:
                    backoff.wait(f"cannot reach Redis at {self.url}", error, threading.Event())
                except Exception:
                    log.exception("could not send %s; dropping it", message.kind)
                    break
            self._outbox.task_done()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is delivered; False if it was not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self._outbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._outbox.unfinished_tasks

    def _deliver(self, message: Message) -> None:
        job_id = getattr(message, "job_id", None)
        entry = self.holds().get(job_id) if isinstance(job_id, int) else None
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.events, self._fields(message))
            if isinstance(message, Finished | Failed) and entry is not None:
                pipe.xack(self.keys.jobs, JOB_GROUP, entry)
                pipe.xdel(self.keys.jobs, entry)
            pipe.execute()
        if isinstance(message, Finished | Failed) and isinstance(job_id, int):
            self.release(job_id)

    def _fields(self, message: Message) -> dict[Any, Any]:
        return {"worker": self.worker_id, "line": encode(message)}


class JobFetcher:
    """Thread bodies that keep the worker's places filled from Redis and its jobs renewed."""

    def __init__(
        self, channel: RedisChannel, worker: Worker, info: WorkerPresence, locks: list[str]
    ) -> None:
        self.channel = channel
        self.client = channel.client
        self.keys = channel.keys
        self.places = worker.max_batch
        self.worker = worker
        self.info = info  # what the presence key says about this worker
        self.locks = locks  # keys this worker holds while it runs (its GPU's)

    def fetch(self) -> None:
        """Thread: whenever a place is free, take a job: a lost worker's first, else a new one."""
        backoff = Backoff()
        me = self.channel.worker_id
        while not self.channel.gone.is_set():
            if len(self.channel.holds()) >= self.places:
                self.channel.gone.wait(0.1)
                continue
            try:
                taken = self._claim_abandoned(me) or self._read_new(me)
                backoff.reset()
            except redis.RedisError as error:
                backoff.wait(
                    f"cannot take jobs from Redis at {self.channel.url}", error, self.channel.gone
                )
                continue
            if taken is not None:
                self._start(*taken)

    def _claim_abandoned(self, me: str) -> tuple[str, dict[str, str], int] | None:
        reply = cast(
            "list[Any]",
            self.client.xautoclaim(
                self.keys.jobs, JOB_GROUP, me, LEASE_MS, start_id="0-0", count=1
            ),
        )
        claimed = reply[1]
        if not claimed:
            return None
        entry, fields = claimed[0]
        pending = cast(
            "list[dict[str, Any]]",
            self.client.xpending_range(self.keys.jobs, JOB_GROUP, entry, entry, 1),
        )
        attempt = int(pending[0]["times_delivered"]) if pending else 2
        return entry, fields, attempt

    def _read_new(self, me: str) -> tuple[str, dict[str, str], int] | None:
        read = cast(
            "list[Any]",
            self.client.xreadgroup(
                JOB_GROUP, me, {self.keys.jobs: ">"}, count=1, block=READ_BLOCK_MS
            ),
        )
        if not read:
            return None
        entry, fields = read[0][1][0]
        return entry, fields, 1

    def _start(self, entry: str, fields: dict[str, str], attempt: int) -> None:
        try:
            start = decode(fields.get("line", ""))
        except ProtocolError as error:
            start = None
            log.error("dropping job entry %s: %s", entry, error)
        if not isinstance(start, StartJob):
            self.client.xack(self.keys.jobs, JOB_GROUP, entry)
            self.client.xdel(self.keys.jobs, entry)
            return
        self.channel.take(start.job_id, entry)
        log.info("took job %s (attempt %d)", start.job_id, attempt)
        self.channel.send(Taken(start.job_id, self.channel.worker_id, attempt))
        if self.client.sismember(self.keys.cancelled, str(start.job_id)):
            self.worker.cancel(start.job_id)  # before it starts: it stops before its first step
        self.worker.submit(start)

    def checks(self) -> None:
        """Thread: take the prompts to check by meaning, each read by one worker, whatever
        its places (the answer goes out as soon as the serving thread reaches a step
        boundary). One that this worker drops unanswered the bot counts as refused."""
        backoff = Backoff()
        me = self.channel.worker_id
        while not self.channel.gone.is_set():
            try:
                read = cast(
                    "list[Any]",
                    self.client.xreadgroup(
                        CHECK_GROUP, me, {self.keys.checks: ">"}, count=10, block=READ_BLOCK_MS
                    ),
                )
                entries = read[0][1] if read else []
                if entries:
                    taken = [entry for entry, _ in entries]
                    self.client.xack(self.keys.checks, CHECK_GROUP, *taken)
                    self.client.xdel(self.keys.checks, *taken)
                backoff.reset()
            except redis.RedisError as error:
                backoff.wait(
                    f"cannot take prompts to check from Redis at {self.channel.url}",
                    error,
                    self.channel.gone,
                )
                continue
            for entry, fields in entries:
                try:
                    message = decode(fields.get("line", ""))
                except ProtocolError as error:
                    log.error("dropping a prompt check %s: %s", entry, error)
                    continue
                if isinstance(message, CheckMeaning):
                    self.worker.check(message)

    def renew(self) -> None:
        """Thread: keep the jobs held (and find those lost), pass on cancellations, and say
        this worker is here."""
        backoff = Backoff()
        while not self.channel.gone.is_set():
            try:
                self._renew_once()
                backoff.reset()
            except redis.RedisError as error:
                backoff.wait(f"cannot reach Redis at {self.channel.url}", error, self.channel.gone)
                continue
            self.channel.gone.wait(RENEW_S)

    def _renew_once(self) -> None:
        me = self.channel.worker_id
        held = self.channel.holds()
        if held:
            pending = cast(
                "list[dict[str, Any]]",
                self.client.xpending_range(
                    self.keys.jobs, JOB_GROUP, "-", "+", 10 * self.places + 10, consumername=me
                ),
            )
            mine = {str(p["message_id"]) for p in pending}
            for job_id, entry in held.items():
                if entry not in mine:
                    log.warning("job %s was handed to another worker; dropping it", job_id)
                    self.worker.abandon(job_id)
                    self.channel.release(job_id)
            kept: list[str | int | bytes | memoryview[int]] = [
                entry for entry in held.values() if entry in mine
            ]
            if kept:
                self.client.xclaim(self.keys.jobs, JOB_GROUP, me, 0, kept, justid=True)
            ids = list(held)
            flags = cast(
                "list[int]", self.client.smismember(self.keys.cancelled, [str(i) for i in ids])
            )
            for job_id, flag in zip(ids, flags, strict=True):
                if flag:
                    self.worker.cancel(job_id)
        presence = self.info.model_copy(update={"busy": list(self.worker.busy)})
        self.client.set(self.keys.worker(me), presence.model_dump_json(), px=PRESENCE_TTL_MS)
        for key in self.locks:
            self.client.set(key, me, px=PRESENCE_TTL_MS)


def _choose_device(
    client: redis.Redis, keys: Keys, name: str, wanted: str, stop: threading.Event
) -> tuple[str, list[str]] | None:
    """With device "auto" and GPUs here, a GPU no other worker draws on (waiting for one to
    free up); else `wanted` as it is. Also the keys to keep renewing."""
    gpus = local_gpus() if wanted == "auto" else []
    if not gpus:
        return wanted, []
    said = False
    while not stop.is_set():
        try:
            claimed = claim_device(client, keys, name, gpus)
        except redis.RedisError as error:
            Backoff().wait("cannot share out the GPUs through Redis", error, stop)
            continue
        if claimed is not None:
            log.info("drawing on %s, which no other worker uses", claimed[0])
            return claimed[0], [claimed[1]]
        if not said:
            log.warning("every GPU here already has a worker; waiting for one to free up")
            said = True
        stop.wait(PRESENCE_TTL_MS / 1000)
    return None


def _wait_for_redis(client: redis.Redis, url: str, stop: threading.Event) -> bool:
    backoff = Backoff()
    while not stop.is_set():
        try:
            client.ping()
            log.info("connected to Redis at %s", safe_url(url))
            return True
        except redis.RedisError as error:
            backoff.wait(f"cannot reach Redis at {safe_url(url)}", error, stop)
    return False


def _wait_for_settings(
    client: redis.Redis, keys: Keys, stop: threading.Event
) -> SharedSettings | None:
    said = False
    backoff = Backoff()
    while not stop.is_set():
        try:
            raw = cast("str | None", client.get(keys.settings))
        except redis.RedisError as error:
            backoff.wait("cannot read the bot's settings from Redis", error, stop)
            continue
        if raw is not None:
            try:
                return SharedSettings.model_validate_json(raw)
            except ValidationError as error:
                log.error("the bot's settings in Redis are not valid: %s", error)
                return None
        if not said:
            log.info("waiting for the bot to publish its settings in Redis")
            said = True
        stop.wait(1.0)
    return None


def _ensure_group(client: redis.Redis, keys: Keys) -> None:
    for stream, group in ((keys.jobs, JOB_GROUP), (keys.checks, CHECK_GROUP)):
        try:
            client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pseudo-dalle worker", description=__doc__)
    add_redis_worker_options(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Connect, wait for the bot's settings, load the models and draw until SIGTERM."""
    if not args.redis:
        log.error("no Redis URL: pass --redis or set REDIS_URL")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping after the current step", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    keys = Keys(args.prefix)
    client = redis.Redis.from_url(
        args.redis,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=15,
    )
    if not _wait_for_redis(client, args.redis, stop):
        return 0
    settings = _wait_for_settings(client, keys, stop)
    if settings is None:
        return 0 if stop.is_set() else 1
    return _serve(client, keys, settings, args, stop)


def _serve(
    client: redis.Redis,
    keys: Keys,
    settings: SharedSettings,
    args: argparse.Namespace,
    stop: threading.Event,
) -> int:
    from generator.worker.build import build_worker, set_threads

    set_threads(settings.options)
    chosen = _choose_device(client, keys, args.name, settings.models.device, stop)
    if chosen is None:
        return 0
    device, locks = chosen
    channel = RedisChannel(client, keys, args.name, args.redis)
    try:
        worker, server = build_worker(
            settings.models,
            settings.options,
            channel,
            device=device,
            cache_dir=args.cache_dir,
            metrics_bind=args.metrics_bind,
        )
    except GeneratorError as error:
        log.error("cannot load the models: %s", error)
        return 1
    models = worker.engine.models
    info = WorkerPresence(
        id=args.name,
        device=str(models.device),
        places=worker.max_batch,
        host=socket.gethostname(),
        pid=os.getpid(),
        busy=[],
        clip_models=list(models.clip_names),
    )
    fetcher = JobFetcher(channel, worker, info, locks)
    _ensure_group(client, keys)
    threading.Thread(target=channel.deliver, daemon=True, name="deliver").start()
    threading.Thread(target=fetcher.renew, daemon=True, name="renew").start()
    threading.Thread(target=fetcher.fetch, daemon=True, name="fetch").start()
    threading.Thread(target=fetcher.checks, daemon=True, name="checks").start()
    threading.Thread(target=_stop_when, args=(stop, channel, worker), daemon=True).start()
    log.info("worker %s ready on %s with %d place(s)", args.name, models.device, worker.max_batch)
    try:
        worker.serve()
    finally:
        if server is not None:
            server.close()
    if not channel.flush(FLUSH_S):
        log.warning("leaving with messages undelivered; their jobs go to another worker")
    try:
        client.delete(keys.worker(args.name), *locks)
    except redis.RedisError:
        log.warning("could not remove this worker's presence key; it expires by itself")
    return 0


def _stop_when(stop: threading.Event, channel: RedisChannel, worker: Worker) -> None:
    stop.wait()
    channel.gone.set()
    worker.close()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    return run(parse(argv))


if __name__ == "__main__":
    leave(main())
