"""The bot's TOML configuration: every key known, typed and range-checked at start-up.

A problem stops the bot with one line naming the file and the key; the token is never shown.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from generator.settings import PRECISION_CHOICES, RELAXATIONS
from generator.threads import MAX_THREADS

DEFAULT_API_BASE = "https://discord.com/api/v10"
DEFAULT_GATEWAY = "wss://gateway.discord.gg/"


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


@dataclass(frozen=True)
class DiscordConfig:
    token: str = ""
    api_base: str = DEFAULT_API_BASE
    gateway_url: str = DEFAULT_GATEWAY
    sync_commands: bool = True


@dataclass(frozen=True)
class ModelsConfig:
    clip: str = "ViT-B/32"
    decoder: str = "https://cdn.openai.com/dall-e/decoder.pkl"
    cache_dir: str = ""
    offline: bool = False
    device: str = "auto"


@dataclass(frozen=True)
class WorkerConfig:
    cutouts: int = 32
    precision: str = "auto"
    checkpointing: bool = False
    compile: bool = False
    max_batch: int = 1
    relaxation: str = "codebook"
    cuda_graphs: bool = True
    threads: int = 0
    restart_delay_s: float = 5.0
    max_requeues: int = 2


@dataclass(frozen=True)
class LimitsConfig:
    """Hard maximums: admins can lower a guild's limits, never raise them past these."""

    max_iterations: int = 5000
    max_size: int = 512
    max_queued_per_user: int = 5
    max_queued_total: int = 50
    min_progress_interval_s: float = 2.0


@dataclass(frozen=True)
class DefaultsConfig:
    """What a guild gets until its admins change it with /drawconfig."""

    default_iterations: int = 1000
    max_iterations: int = 2000
    max_queued_per_user: int = 2
    progress_interval_s: float = 10.0
    max_size: int = 512


@dataclass(frozen=True)
class StorageConfig:
    database: str = "pseudo-dalle.sqlite3"
    latents_dir: str = "latents"


@dataclass(frozen=True)
class HealthConfig:
    """A file the bot rewrites every `interval_s` with its gateway and worker state, for
    `pseudo-dalle healthcheck` (Docker's HEALTHCHECK). Empty: no file."""

    heartbeat_file: str = ""
    interval_s: float = 15.0


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"


@dataclass(frozen=True)
class Config:
    discord: DiscordConfig
    models: ModelsConfig
    worker: WorkerConfig
    limits: LimitsConfig
    defaults: DefaultsConfig
    storage: StorageConfig
    health: HealthConfig
    logging: LoggingConfig
    path: Path

    def resolve(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).absolute()


_SECTIONS: dict[str, type[Any]] = {
    "discord": DiscordConfig,
    "models": ModelsConfig,
    "worker": WorkerConfig,
    "limits": LimitsConfig,
    "defaults": DefaultsConfig,
    "storage": StorageConfig,
    "health": HealthConfig,
    "logging": LoggingConfig,
}

_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("worker", "cutouts"): (1, 256),
    ("worker", "max_batch"): (1, 16),
    ("worker", "threads"): (0, MAX_THREADS),
    ("worker", "restart_delay_s"): (0, 600),
    ("worker", "max_requeues"): (0, 10),
    ("limits", "max_iterations"): (1, 100_000),
    ("limits", "max_size"): (64, 1024),
    ("limits", "max_queued_per_user"): (1, 1000),
    ("limits", "max_queued_total"): (1, 100_000),
    ("limits", "min_progress_interval_s"): (2, 3600),
    ("defaults", "default_iterations"): (1, 100_000),
    ("defaults", "max_iterations"): (1, 100_000),
    ("defaults", "max_queued_per_user"): (1, 1000),
    ("defaults", "progress_interval_s"): (2, 3600),
    ("defaults", "max_size"): (64, 1024),
    ("health", "interval_s"): (1, 300),
}


_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def _check(where: str, section: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise ConfigError(f"{where}: [{section}] {key} must be {_KINDS[kind]}, got {value!r}")
    bounds = _RANGES.get((section, key))
    if bounds and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(
            f"{where}: [{section}] {key} must be from {bounds[0]:g} to {bounds[1]:g}, got {value}"
        )
    if key == "max_size" and value % 8:
        raise ConfigError(f"{where}: [{section}] {key} must be a multiple of 8, got {value}")
    return value


def load_config(
    path: Path, environ: dict[str, str] | None = None, *, require_token: bool = True
) -> Config:
    """Read and validate `path`; DISCORD_TOKEN in the environment wins over the file's token."""
    environ = dict(os.environ) if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (copy config.example.toml to start)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section [{unknown[0]}]")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        known = {f.name: f.default for f in fields(cls)}
        extra = sorted(set(table) - set(known))
        if extra:
            raise ConfigError(f"{path}: unknown setting [{name}] {extra[0]}")
        values = {k: _check(str(path), name, k, table[k], known[k]) for k in table}
        sections[name] = cls(**values)
    config = Config(**sections, path=path)
    token = environ.get("DISCORD_TOKEN") or config.discord.token
    if require_token and not token.strip():
        raise ConfigError(
            f"{path}: no bot token: set DISCORD_TOKEN in the environment or [discord] token"
        )
    discord = DiscordConfig(**{**vars(config.discord), "token": token.strip()})
    defaults, limits = config.defaults, config.limits
    if defaults.default_iterations > defaults.max_iterations:
        raise ConfigError(f"{path}: [defaults] default_iterations is above max_iterations")
    if defaults.max_iterations > limits.max_iterations or defaults.max_size > limits.max_size:
        raise ConfigError(f"{path}: [defaults] must stay within [limits]")
    if config.worker.relaxation not in RELAXATIONS:
        raise ConfigError(f"{path}: [worker] relaxation must be one of {', '.join(RELAXATIONS)}")
    if config.worker.precision not in PRECISION_CHOICES:
        choices = ", ".join(PRECISION_CHOICES)
        raise ConfigError(f"{path}: [worker] precision must be one of {choices}")
    if config.logging.level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"{path}: [logging] level must be DEBUG, INFO, WARNING or ERROR")
    return Config(**{**sections, "discord": discord}, path=path)
