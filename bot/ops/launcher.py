"""Start-up: read the config, point discord.py at the configured API, build the parts, wire
them together, run, and shut them down in order.

    store ─┬─ scheduler ── transport (LocalWorker or RedisWorkers) ── worker process(es)
           │      │ job events
           │      ├──────> card presenter ── Discord
           │      └──────> heartbeat file, metrics
           └─ front desk <── cogs, buttons <── DrawBot ── Discord
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from bot.config import Config, ConfigError, load_config
from bot.front.app import DrawBot
from bot.front.automod import AutoModSync
from bot.front.channels import age_restricted
from bot.front.cogs.admin import AdminCog
from bot.front.cogs.draw import DrawCog
from bot.front.cogs.draw_from_image import DrawFromImageMenu
from bot.front.cogs.help import HelpCog
from bot.front.cogs.moderation import ModerationCog
from bot.front.cogs.queue import QueueCog
from bot.front.cogs.settings import SettingsCog
from bot.front.edits import EditControls
from bot.front.moderation_log import ModerationLog
from bot.front.presenter import CardPresenter
from bot.front.views import job_buttons, presses
from bot.jobs.desk import FrontDesk
from bot.jobs.edits import Editing
from bot.jobs.events import JobEvents
from bot.jobs.pictures import PictureIntake
from bot.jobs.retention import Retention
from bot.jobs.scheduler import Scheduler
from bot.jobs.screening import PictureGate
from bot.jobs.spec import Rules
from bot.jobs.store import Store
from bot.moderation.policy import ScreeningPolicy
from bot.moderation.rules import AutoModRules, PromptRules
from bot.moderation.terms import TermList
from bot.ops.health import GATEWAY_CHANGES, HeartbeatWriter
from bot.ops.metrics import BotMetrics, WatchedWorkers
from bot.workers.local import LocalWorker
from bot.workers.redis_streams import RedisWorkers
from bot.workers.transport import WorkerTransport
from generator.contract.encoders import PromptLimit, prompt_limit
from generator.contract.errors import ModelLoadError
from generator.contract.weights import default_cache_dir

log = logging.getLogger("pseudo_dalle")
LOCAL_WORKER_ID = "local"
# Shutdown's deadlines: the worker gets up to 3 s (bot.jobs.scheduler), the cards these, the gateway
# 2 s (bot.front.app): 8 s in all, within Docker's stop_grace_period (10 s).
CARDS_FLUSH_S = 3.0


class _HideToken(logging.Filter):
    """Belt and braces: no log line ever carries the token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token and self.token in record.getMessage():
            record.msg, record.args = record.getMessage().replace(self.token, "[token]"), ()
        return True


def configure_logging(config: Config) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_HideToken(config.discord.token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.logging.level.upper())


def point_discord_at(config: Config) -> None:
    """Use the configured REST base and gateway (Discord's own unless set otherwise)."""
    discord.http.Route.BASE = config.discord.api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.discord.gateway_url)


@dataclass
class App:
    """The bot's parts, built and wired by `assemble`."""

    bot: DrawBot
    store: Store
    scheduler: Scheduler
    presenter: CardPresenter
    moderation_log: ModerationLog
    retention: Retention
    heartbeat: HeartbeatWriter | None
    intake: PictureIntake
    metrics: BotMetrics | None = None

    async def start(self, token: str) -> asyncio.Task[None]:
        """Log in, start the parts, and connect to the gateway (the returned task)."""
        await self.bot.login(token)
        self.presenter.start()
        self.moderation_log.start()
        self.scheduler.start()
        self.retention.start()
        if self.heartbeat is not None:
            self.heartbeat.start()
        if self.metrics is not None:
            await self.metrics.start()
        return asyncio.create_task(self.bot.connect(), name="discord")

    async def stop(self) -> None:
        """Stop taking jobs, put the running ones back in the queue, show that on their cards,
        then leave the gateway; each step has a deadline, so a Discord that does not answer
        cannot hold the shutdown up. The store stays open: its owner closes it."""
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        await self.retention.stop()
        await self.scheduler.stop()
        await self.presenter.stop(CARDS_FLUSH_S)
        await self.moderation_log.stop(CARDS_FLUSH_S)
        await self.bot.close()
        await self.intake.close()
        if self.metrics is not None:
            await self.metrics.stop()


def transport_for(config: Config) -> WorkerTransport:
    """Workers through Redis when a URL is set, else one worker process on this host."""
    if config.redis.url:
        return RedisWorkers(config.redis.url, config.shared_settings(), prefix=config.redis.prefix)
    return LocalWorker(
        config.worker_configuration(LOCAL_WORKER_ID),
        restart_delay_s=config.worker.restart_delay_s,
        metrics_bind=config.worker.metrics_bind,
    )


def multilingual_limit(config: Config) -> PromptLimit | None:
    """The multilingual encoder's token limit, so /draw refuses a prompt too long for it at once
    (its tokenizer's files are fetched into the cache, a few MB). None when every prompt goes
    to CLIP, or when the tokenizer cannot be had on this host: the worker checks then."""
    models = config.models
    if models.text_encoder == "clip":
        return None
    cache = config.resolve(models.cache_dir) if models.cache_dir else default_cache_dir()
    try:
        return prompt_limit(models.multilingual_model, cache, offline=models.offline)
    except ModelLoadError as error:
        log.warning(
            "prompt lengths for the multilingual encoder are checked by the worker only: %s", error
        )
        return None


def rules_for(config: Config) -> Rules:
    """What the operator's config decides for every drawing."""
    return Rules(
        limits=config.limits,
        main_clip=config.models.clip,
        max_cutouts=config.worker.cutouts,
        text_encoder=config.models.text_encoder,
        multilingual_limit=multilingual_limit(config),
        screening=screening_policy(config),
    )


def screening_policy(config: Config) -> ScreeningPolicy:
    """The operator's `[moderation]` defaults, floors and concepts for screening."""
    moderation = config.moderation
    return ScreeningPolicy(
        pictures=moderation.picture_screening,
        require_pictures=moderation.require_picture_screening,
        meaning=moderation.prompt_meaning,
        require_meaning=moderation.require_prompt_meaning,
        concepts=tuple(moderation.picture_concepts),
    )


def open_store(config: Config, rules: Rules) -> Store:
    return Store(config.resolve(config.storage.database), config.defaults, rules)


def assemble(config: Config, transport: WorkerTransport | None = None) -> App:
    """Every part of the bot, wired; `transport` reaches the workers (by default as `config`
    says: `transport_for`)."""
    rules = rules_for(config)
    store = open_store(config, rules)
    events = JobEvents()
    workers = transport if transport is not None else transport_for(config)
    watched = WatchedWorkers(workers) if config.metrics.bind else None
    gate = PictureGate(store)
    scheduler = Scheduler(
        store, watched or workers, events, max_requeues=config.worker.max_requeues, gate=gate
    )
    images = config.images
    intake = PictureIntake(
        enabled=images.enabled, origins=images.cdn_origins, timeout_s=images.fetch_timeout_s
    )
    moderation = config.moderation
    prompt_rules = PromptRules(
        TermList(moderation.blocked_terms, moderation.allowed_terms), AutoModRules()
    )
    desk = FrontDesk(
        store, scheduler, rules, intake, prompt_rules, keep_days=config.storage.keep_days
    )
    editing = Editing(desk)
    controls = EditControls(desk, editing)
    buttons = job_buttons(presses(desk, controls))
    automod = AutoModSync(prompt_rules.automod)
    cogs = [
        DrawCog(desk),
        QueueCog(store, scheduler),
        AdminCog(store, config.limits, desk),
        HelpCog(desk, scheduler),
        ModerationCog(store, prompt_rules, automod, rules.screening),
        SettingsCog(store),
        automod,
    ]
    menus = [DrawFromImageMenu(desk, controls).command]
    bot = DrawBot(
        cogs,
        buttons,
        menus=menus,
        items=controls.items,
        sync_commands=config.discord.sync_commands,
    )
    gate.age_restricted = age_restricted(bot)  # the front end knows which channels are
    presenter = CardPresenter(bot, store, buttons)
    events.subscribe(presenter.on_event)
    moderation_log = ModerationLog(bot, store)
    events.subscribe(moderation_log.on_event)
    retention = Retention(store, config.storage.keep_days)
    heartbeat = None
    if config.health.heartbeat_file:
        heartbeat = HeartbeatWriter(
            config.resolve(config.health.heartbeat_file),
            config.health.interval_s,
            gateway=bot.gateway_connected,
            worker=lambda: bool(scheduler.workers()),
        )
        events.subscribe(heartbeat.on_event)
        for gateway_event in GATEWAY_CHANGES:
            bot.add_listener(heartbeat.on_gateway, gateway_event)
    metrics = None
    if watched is not None:
        metrics = BotMetrics(config.metrics.bind, bot, scheduler, watched)
        events.subscribe(metrics.on_event)
        desk.picture_refused = metrics.picture_refused
    return App(
        bot, store, scheduler, presenter, moderation_log, retention, heartbeat, intake, metrics
    )


async def run_bot(config: Config) -> None:
    """Run until Discord turns the bot away (the error propagates) or SIGTERM/SIGINT arrives."""
    point_discord_at(config)
    app = assemble(config)
    try:
        async with app.bot:
            connection = await app.start(config.discord.token)
            try:
                await _until_signal(connection)
            finally:
                await app.stop()
                # After a lost connection discord.py may be asleep before its next reconnect
                # attempt (up to minutes); the bot is closed, so there is nothing to wait for.
                connection.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connection
    finally:
        app.store.close()


async def _until_signal(connection: asyncio.Task[None]) -> None:
    """Wait for SIGTERM or SIGINT, or for `connection` to end (then raise what it raised)."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, signum, signalled)
    waiter = asyncio.create_task(signalled.wait(), name="signals")
    try:
        await asyncio.wait({connection, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if connection.done():
        connection.result()


def _on_signal(signum: int, signalled: asyncio.Event) -> None:
    log.info("%s: finishing up; running jobs go back to the queue", signal.Signals(signum).name)
    signalled.set()


def main(config_path: Path) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as error:
        print(f"pseudo-dalle bot: {error}", file=sys.stderr)
        return 2
    configure_logging(config)
    try:
        asyncio.run(run_bot(config))
    except discord.LoginFailure:
        log.error("Discord rejected the bot token; check DISCORD_TOKEN or [discord] token")
        return 1
    except (aiohttp.ClientError, OSError, discord.HTTPException) as error:
        log.error("cannot reach Discord at %s: %s", config.discord.api_base, error)
        return 1
    log.info("stopped")
    return 0
