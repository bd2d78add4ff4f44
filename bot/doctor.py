"""`pseudo-dalle doctor`: everything an operator needs when something is wrong, on one screen.

It never prints the token, only whether one is set and where it comes from.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import redis
from pydantic import ValidationError

from bot.config import Config, ConfigError, load_config
from bot.health import check_heartbeat
from generator.cli.diagnostics import device_lines, version_lines, weight_lines
from generator.contract.protocol import ModelChoice, WorkerPresence
from generator.contract.redis_keys import Keys, safe_url
from generator.contract.threads import AUTO, WORKER_RESERVED_CORES, describe_threads
from generator.contract.weights import default_cache_dir


def _database_lines(path: Path) -> list[str]:
    if not path.is_file():
        return [f"database: {path} (not created yet)"]
    size = f"{path.stat().st_size / 2**20:.1f} MiB"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            counts = dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"))
    except sqlite3.Error as error:
        return [f"database: {path}, {size}, unreadable: {error}"]
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no jobs"
    return [f"database: {path}, {size}, {summary}"]


def _worker_lines(config: Config) -> list[str]:
    """The workers connected through Redis now, or how the local worker runs."""
    if not config.redis.url:
        return ["workers: one worker process on this host, started by the bot"]
    url, keys = safe_url(config.redis.url), Keys(config.redis.prefix)
    client = redis.Redis.from_url(config.redis.url, decode_responses=True, socket_timeout=5)
    try:
        found = [WorkerPresence.model_validate_json(raw) for raw in _presences(client, keys)]
    except redis.RedisError as error:
        return [f"workers: cannot reach Redis at {url}: {error}"]
    except ValidationError as error:
        return [f"workers: a worker's presence key in {url} is unreadable: {error}"]
    finally:
        client.close()
    if not found:
        return [f"workers: none connected to {url}; drawings wait in the queue"]
    lines = [f"workers: {len(found)} connected to {url}"]
    for worker in sorted(found, key=lambda w: w.id):
        busy = len(worker.busy)
        lines.append(
            f"  {worker.id}: {worker.device}, {worker.places - busy} of {worker.places} "
            f"place(s) free, on {worker.host} (pid {worker.pid})"
        )
    return lines


def _presences(client: redis.Redis, keys: Keys) -> list[str]:
    values = [client.get(key) for key in client.scan_iter(match=keys.workers, count=100)]
    return [value for value in values if isinstance(value, str)]


def _token_line(config: Config | None) -> str:
    if os.environ.get("DISCORD_TOKEN", "").strip():
        return "token: set (from DISCORD_TOKEN)"
    if config is not None and config.discord.token:
        return "token: set (from the config file)"
    return "token: NOT SET: put DISCORD_TOKEN in .env or the environment"


def report(config_path: Path | None) -> list[str]:
    lines = version_lines()
    config: Config | None = None
    if config_path is not None:
        try:
            config = load_config(config_path, require_token=False)
            lines.append(f"config: {config_path}")
        except ConfigError as error:
            lines.append(f"config: {error}")
    models = config.models if config else None
    device = models.device if models else "auto"
    lines += device_lines(device)
    threads = config.worker.threads if config is not None else AUTO
    lines.append(f"worker threads: {describe_threads(threads, reserve=WORKER_RESERVED_CORES)}")
    if config is not None and models is not None:
        cache = config.resolve(models.cache_dir) if models.cache_dir else default_cache_dir()
        lines += weight_lines(models.clip, models.decoder, cache, models.encoder)
        lines += _database_lines(config.resolve(config.storage.database))
        lines += _worker_lines(config)
        if config.health.heartbeat_file:
            beat = config.resolve(config.health.heartbeat_file)
            lines.append(f"health: {check_heartbeat(beat, 90.0) or 'healthy'}")
    else:
        defaults = ModelChoice()
        lines += weight_lines(
            defaults.clip, defaults.decoder, default_cache_dir(), defaults.encoder
        )
    lines.append(_token_line(config))
    return lines
