"""The bot's Prometheus metrics, served at http://`[metrics] bind`/metrics by a small aiohttp
application; without an address nothing of this is built and nothing listens.

The figures come from what the bot already does: job events (`bot.jobs.events`) move the counters
and histograms as jobs wait, start, draw and end; the queue, the workers and the gateway are
read from the scheduler and the client when Prometheus asks. A worker that leaves is seen on
its way past to the scheduler (`WatchedWorkers`), since job events say nothing of idle workers.
Every label has a bounded set of values (outcomes, states, sizes, qualities, the bot's own
commands, the reasons a picture is refused): no member, server or prompt is ever a label.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator

import discord
from aiohttp import web
from discord import app_commands
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.front.app import DrawBot
from bot.jobs.events import (
    JobEnded,
    JobEvent,
    JobHandedOver,
    JobPaused,
    JobProgress,
    JobStarting,
    PictureWithheld,
    PromptRefused,
    QueueChanged,
)
from bot.jobs.scheduler import Scheduler
from bot.jobs.store import JobStatus
from bot.moderation.rules import Source
from bot.workers.transport import WorkerEvent, WorkerInfo, WorkerJoined, WorkerLeft, WorkerTransport
from generator.contract import reasons
from generator.contract.errors import ImageInputError
from generator.contract.metrics import parse_bind
from generator.contract.protocol import CheckMeaning, StartJob

log = logging.getLogger("pseudo_dalle.metrics")

# From a job that starts at once to one that waited half an hour behind a long queue.
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
# From a tiny draft on a GPU to a large picture drawn on a CPU.
RUN_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
OUTCOMES = {
    JobStatus.DONE: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}
REQUEUED = "requeued"
# Why a member's picture was refused, by the reason that told them.
REFUSALS = {
    reasons.PICTURE_TOO_BIG.code: "too_big",
    reasons.PICTURE_MORE_THAN_DECLARED.code: "too_big",
    reasons.PICTURE_TYPE.code: "format",
    reasons.NOT_A_PICTURE.code: "format",
    reasons.PICTURE_TOO_MANY_PIXELS.code: "too_many_pixels",
    reasons.PICTURE_DAMAGED.code: "damaged",
    reasons.PICTURE_NOT_FROM_DISCORD.code: "not_from_discord",
    reasons.PICTURE_NOT_FETCHED.code: "not_fetched",
    reasons.PICTURE_TIMED_OUT.code: "timed_out",
}
OTHER_REFUSAL = "other"
WITHHELD_PICTURES = ("preview", "final", "timelapse")


class WatchedWorkers:
    """The scheduler's transport, passed through, keeping the workers that left and have not
    been replaced: by a worker of the same name (the local worker restarted) or by any new
    one (a Redis worker started in its place), the one gone longest first."""

    def __init__(self, transport: WorkerTransport) -> None:
        self.transport = transport
        self.gone: dict[str, None] = {}  # worker ids in the order they left

    @property
    def keeps_jobs(self) -> bool:
        return self.transport.keeps_jobs

    def start(self) -> None:
        self.transport.start()

    async def stop(self, grace_s: float) -> None:
        await self.transport.stop(grace_s)

    async def held_jobs(self) -> set[int]:
        return await self.transport.held_jobs()

    async def dispatch(self, job: StartJob) -> str | None:
        return await self.transport.dispatch(job)

    async def cancel(self, job_id: int, worker_id: str | None) -> None:
        await self.transport.cancel(job_id, worker_id)

    async def check(self, message: CheckMeaning) -> None:
        await self.transport.check(message)

    def workers(self) -> list[WorkerInfo]:
        return self.transport.workers()

    async def receive(self) -> WorkerEvent:
        event = await self.transport.receive()
        if isinstance(event, WorkerLeft):
            self.gone[event.worker_id] = None
        elif isinstance(event, WorkerJoined):
            if event.worker.id in self.gone:
                del self.gone[event.worker.id]
            elif self.gone:
                del self.gone[next(iter(self.gone))]
        return event


class BotMetrics(Collector):
    """The bot's figures in a registry of their own; `on_event` hears the job events, and
    `collect` reads the queue, the workers and the gateway at each scrape."""

    def __init__(
        self, bind: str, bot: DrawBot, scheduler: Scheduler, workers: WatchedWorkers
    ) -> None:
        self.bind = bind
        self.bot = bot
        self.scheduler = scheduler
        self.watched = workers
        self.registry = CollectorRegistry()
        self.wait = Histogram(
            "pseudo_dalle_job_wait_seconds",
            "Seconds a job waited in the queue before it was dispatched to a worker",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.run = Histogram(
            "pseudo_dalle_job_run_seconds",
            "Seconds a worker spent drawing a job that finished",
            ["size", "quality"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.outcomes = Counter(
            "pseudo_dalle_jobs",
            "Jobs that ended (succeeded, failed, cancelled) or went back to the queue (requeued)",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in (*OUTCOMES.values(), REQUEUED):
            self.outcomes.labels(outcome)
        self.iterations = Counter(
            "pseudo_dalle_iterations",
            "Iterations the workers reported drawing",
            registry=self.registry,
        )
        self.commands = Counter(
            "pseudo_dalle_commands",
            "Uses of the bot's slash commands and context menus",
            ["command"],
            registry=self.registry,
        )
        self.pictures_refused = Counter(
            "pseudo_dalle_image_inputs_rejected",
            "Pictures members gave with a drawing that were refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        for reason in (*REFUSALS.values(), OTHER_REFUSAL):
            self.pictures_refused.labels(reason)
        self.prompts_refused = Counter(
            "pseudo_dalle_prompts_rejected",
            "Prompts refused by a moderation rule, by whose rule it was",
            ["source"],
            registry=self.registry,
        )
        for source in Source:
            self.prompts_refused.labels(source.value)
        self.pictures_withheld = Counter(
            "pseudo_dalle_pictures_withheld",
            "Pictures the screening withheld from a channel that is not age-restricted, by what "
            "they were (preview, final, timelapse)",
            ["picture"],
            registry=self.registry,
        )
        for picture in WITHHELD_PICTURES:
            self.pictures_withheld.labels(picture)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._waiting: dict[int, float] = {}  # queued job -> when it joined the queue
        self._requeued: dict[int, float] = {}  # job back in the queue -> when
        self._drawn: dict[int, int] = {}  # dispatched job -> iterations counted so far
        self._runner: web.AppRunner | None = None
        self.registry.register(self)
        bot.add_listener(self._on_interaction, "on_interaction")

    async def start(self) -> None:
        """Listen on `bind`; an address that cannot be listened on is logged and the bot runs
        on without its metrics."""
        for command in self._commands():
            self.commands.labels(command)
        host, port = parse_bind(self.bind)
        application = web.Application()
        application.router.add_get("/metrics", make_aiohttp_handler(self.registry))
        runner = web.AppRunner(application, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            log.error("not serving metrics at %s: %s", self.bind, error)
            await runner.cleanup()
            return
        self._runner = runner
        log.info("serving metrics at http://%s/metrics", self.bind)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def picture_refused(self, error: ImageInputError) -> None:
        self.pictures_refused.labels(REFUSALS.get(error.reason.code, OTHER_REFUSAL)).inc()

    # -- job events --------------------------------------------------------------------------
    def on_event(self, event: JobEvent) -> None:
        if isinstance(event, QueueChanged):
            self._queue_changed(event)
        elif isinstance(event, JobStarting) and event.job.id not in self._drawn:
            job = event.job
            joined = self._requeued.pop(job.id, job.created_at)
            self.wait.observe(max((job.started_at or time.time()) - joined, 0.0))
            self._drawn[job.id] = 0
        elif isinstance(event, JobProgress):
            self._count(event.job.id, event.step)
        elif isinstance(event, JobEnded):
            self._ended(event)
        elif isinstance(event, JobHandedOver):
            # Redis hands it to the next free worker, which draws it from the start.
            self.outcomes.labels(REQUEUED).inc()
            self._drawn[event.job.id] = 0
        elif isinstance(event, JobPaused) and not event.continues:
            self._back_in_queue(event.job.id)
        elif isinstance(event, PromptRefused):
            self.prompts_refused.labels(event.source.value).inc()
        elif isinstance(event, PictureWithheld):
            self.pictures_withheld.labels(event.what).inc()

    def _queue_changed(self, event: QueueChanged) -> None:
        for waiting in event.waiting:
            if waiting.job.id in self._drawn:  # its worker stopped: it waits again
                self._back_in_queue(waiting.job.id)
        self._waiting = {
            w.job.id: self._requeued.get(w.job.id, w.job.created_at) for w in event.waiting
        }

    def _back_in_queue(self, job_id: int) -> None:
        self.outcomes.labels(REQUEUED).inc()
        self._drawn.pop(job_id, None)
        self._requeued[job_id] = time.time()

    def _count(self, job_id: int, step: int) -> None:
        """Count the iterations job `job_id` drew since its last report."""
        counted = self._drawn.get(job_id, 0)
        if step > counted:
            self.iterations.inc(step - counted)
        self._drawn[job_id] = max(step, counted)

    def _ended(self, event: JobEnded) -> None:
        job = event.job
        self._count(job.id, job.steps)
        self._drawn.pop(job.id, None)
        self._requeued.pop(job.id, None)
        outcome = OUTCOMES.get(job.status)
        if outcome is not None:
            self.outcomes.labels(outcome).inc()
        if job.status == JobStatus.DONE and job.seconds is not None:
            self.run.labels(str(job.spec.width), job.spec.quality).observe(job.seconds)

    # -- what is read at each scrape ---------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "pseudo_dalle_queue_jobs",
            "Jobs waiting in the queue and being drawn",
            labels=["state"],
        )
        queue.add_metric(["queued"], len(self._waiting))
        queue.add_metric(["running"], len(self.scheduler.running))
        yield queue
        oldest = min(self._waiting.values(), default=None)
        yield GaugeMetricFamily(
            "pseudo_dalle_queue_oldest_age_seconds",
            "Seconds the job waiting longest has waited (0: none waits)",
            value=0.0 if oldest is None else max(time.time() - oldest, 0.0),
        )
        yield self._workers()
        latency = self.bot.latency
        if math.isfinite(latency):  # absent until the gateway has answered a heartbeat
            yield GaugeMetricFamily(
                "discord_gateway_latency_seconds",
                "Seconds between a gateway heartbeat and Discord's acknowledgement",
                value=latency,
            )
        yield GaugeMetricFamily(
            "discord_connected",
            "1 while the gateway connection is up and ready, else 0",
            value=1.0 if self.bot.gateway_connected() else 0.0,
        )

    def _workers(self) -> GaugeMetricFamily:
        workers = GaugeMetricFamily(
            "pseudo_dalle_workers",
            "Workers ready and idle, ready and drawing, or gone and not yet replaced",
            labels=["state"],
        )
        ready = self.scheduler.workers()
        busy = sum(1 for worker in ready if self.scheduler.busy(worker.id))
        # A worker back under its name may be ready a moment before the scheduler hears it.
        gone = self.watched.gone.keys() - {worker.id for worker in ready}
        workers.add_metric(["idle"], len(ready) - busy)
        workers.add_metric(["busy"], busy)
        workers.add_metric(["gone"], len(gone))
        return workers

    # -- commands ----------------------------------------------------------------------------
    def _commands(self) -> list[str]:
        """The names of the bot's commands, counted from zero so that a rate sees the first
        use."""
        tree = self.bot.tree
        slash = [
            c.qualified_name for c in tree.walk_commands() if isinstance(c, app_commands.Command)
        ]
        menus = [m.qualified_name for m in tree.walk_commands(type=discord.AppCommandType.message)]
        return slash + menus

    async def _on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is not discord.InteractionType.application_command:
            return
        command = interaction.command
        if command is not None:  # only the bot's own commands: a bounded set of names
            self.commands.labels(command.qualified_name).inc()
