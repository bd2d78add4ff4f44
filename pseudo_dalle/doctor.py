"""`pseudo-dalle doctor`: everything an operator needs when something is wrong, on one screen:
the engine's versions, device and weights, then the bot's config, database, workers, health and
whether a token is set (never the token itself)."""

from __future__ import annotations

from pathlib import Path

from bot.ops.doctor import bot_lines, read_config, token_line
from generator.cli.diagnostics import device_lines, version_lines, weight_lines
from generator.contract.protocol import ModelChoice
from generator.contract.threads import AUTO, WORKER_RESERVED_CORES, describe_threads
from generator.contract.weights import default_cache_dir


def report(config_path: Path | None) -> list[str]:
    lines = version_lines()
    config, said = read_config(config_path)
    lines += said
    models = config.models if config is not None else ModelChoice()
    lines += device_lines(models.device)
    threads = config.worker.threads if config is not None else AUTO
    lines.append(f"worker threads: {describe_threads(threads, reserve=WORKER_RESERVED_CORES)}")
    cache = default_cache_dir()
    if config is not None and models.cache_dir:
        cache = config.resolve(models.cache_dir)
    lines += weight_lines(models.clip, models.decoder, cache, models.encoder)
    if config is not None:
        lines += bot_lines(config)
    lines.append(token_line(config))
    return lines
