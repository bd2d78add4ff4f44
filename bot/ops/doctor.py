"""What `pseudo-dalle doctor` says about the bot: its config, database, workers, health and token.

The console command (`pseudo_dalle.doctor`) puts these lines beside the engine's (versions, the
device, the weights). The token is never printed, only whether one is set and where it comes
from.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import redis
from pydantic import ValidationError

from bot.config import Config, ConfigError, load_config
from bot.ops.health import check_heartbeat
from generator.contract.protocol import WorkerPresence
from generator.contract.redis_keys import Keys, safe_url
from generator.contract.screening import BUILTIN_CONCEPTS, LEARNED_PROMPT_MODELS
from generator.contract.weights import clip_label


def read_config(path: Path | None) -> tuple[Config | None, list[str]]:
    """The config at `path` (None: the built-in defaults are reported on), and a line on it."""
    if path is None:
        return None, []
    try:
        return load_config(path, require_token=False), [f"config: {path}"]
    except ConfigError as error:
        return None, [f"config: {error}"]


def bot_lines(config: Config) -> list[str]:
    """The database, the workers and the bot's health, as `config` places them."""
    lines = _database_lines(config.resolve(config.storage.database))
    lines += _worker_lines(config)
    lines += moderation_lines(config)
    if config.health.heartbeat_file:
        beat = config.resolve(config.health.heartbeat_file)
        lines.append(f"health: {check_heartbeat(beat, 90.0) or 'healthy'}")
    return lines


def moderation_lines(config: Config) -> list[str]:
    """What is checked: prompts by terms (and by meaning where on), pictures by screening."""
    moderation = config.moderation
    meaning = (
        "on everywhere (required)"
        if moderation.require_prompt_meaning
        else f"{'on' if moderation.prompt_meaning else 'off'} unless a server says otherwise"
    )
    if moderation.require_picture_screening:
        pictures = "on everywhere (required)"
    else:
        said = "on" if moderation.picture_screening else "off"
        pictures = f"{said} unless a server says otherwise"
    main = clip_label(config.models.clip)
    learned = (
        f"Q16's learned prompts for {main} and "
        if main in LEARNED_PROMPT_MODELS
        else f"no learned prompts for {main} (Q16 has them for "
        f"{', '.join(LEARNED_PROMPT_MODELS)}), only "
    )
    return [
        f"moderation: prompts are checked against {len(moderation.blocked_terms)} blocked "
        f"term(s) of the operator ({len(moderation.allowed_terms)} allowed), each server's own "
        f"and its AutoMod keyword rules; by meaning: {meaning}",
        f"moderation: picture screening {pictures}, with {learned}"
        f"{len(BUILTIN_CONCEPTS)} built-in concepts and {len(moderation.picture_concepts)} of "
        "the operator's; a picture that crosses one is withheld from channels that are not "
        "age-restricted",
    ]


def token_line(config: Config | None) -> str:
    if os.environ.get("DISCORD_TOKEN", "").strip():
        return "token: set (from DISCORD_TOKEN)"
    if config is not None and config.discord.token:
        return "token: set (from the config file)"
    return "token: NOT SET: put DISCORD_TOKEN in .env or the environment"


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
