"""Start-up: read the config, point discord.py at the configured API, build the store, run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from bot.app import DrawBot
from bot.config import Config, ConfigError, load_config
from bot.store import Store

log = logging.getLogger("pseudo_dalle")


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


async def run_bot(config: Config) -> None:
    """Run until Discord turns the bot away (the error propagates) or SIGTERM/SIGINT arrives."""
    point_discord_at(config)
    config.resolve(config.storage.latents_dir).mkdir(parents=True, exist_ok=True)
    store = Store(config.resolve(config.storage.database), config.defaults)
    try:
        async with DrawBot(config, store) as bot:
            connection = asyncio.create_task(bot.start(config.discord.token), name="discord")
            await _until_signal(connection)
            await bot.close()
            # After a lost connection discord.py may be asleep before its next reconnect
            # attempt (up to minutes); the bot is closed, so there is nothing to wait for.
            connection.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connection
    finally:
        store.close()


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
