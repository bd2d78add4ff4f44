"""The bot's TOML configuration: every key known, typed and range-checked at start-up.

Each section is a pydantic model in strict mode, so a key's type, range, default and help text
are declared once, next to the key (the limits in `bot.limits`, the worker's in
`generator.contract.protocol`). A problem stops the bot with one line naming the file and the
key; the token is never shown.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

import yarl
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from bot.limits import (
    MAX_TERMS,
    STRICT,
    GuildLimits,
    HardLimits,
    Term,
    beyond_limits,
    bounds,
    default_beyond_maximum,
)
from generator.contract.metrics import parse_bind
from generator.contract.protocol import Configure, ModelChoice, SharedSettings, WorkerOptions
from generator.contract.screening import MAX_JOB_CONCEPTS, MAX_SERVER_CONCEPTS, Concept

DEFAULT_API_BASE = "https://discord.com/api/v10"
DEFAULT_GATEWAY = "wss://gateway.discord.gg/"
# Where Discord keeps attachments: the only places the bot fetches members' pictures from.
DISCORD_CDN = ("https://cdn.discordapp.com", "https://media.discordapp.net")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
CONFIG_CEILINGS = ("max_iterations", "max_size", "max_queued_per_user")
# Settings of earlier versions, and what to do about each.
REMOVED = {
    ("storage", "latents_dir"): "0.3 no longer reads the latent files of versions before 0.2: "
    "remove the setting, and the folder it names",
}


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class DiscordConfig(BaseModel):
    model_config = STRICT

    token: str = ""
    api_base: str = DEFAULT_API_BASE
    gateway_url: str = DEFAULT_GATEWAY
    sync_commands: bool = True


def _bind(value: str) -> str:
    if value:
        parse_bind(value)
    return value


# Where a process serves Prometheus metrics: HOST:PORT, or empty for nothing listening.
Bind = Annotated[str, AfterValidator(_bind)]


class WorkerConfig(WorkerOptions):
    """The worker's options plus how the bot looks after it."""

    restart_delay_s: Annotated[float, Field(ge=0, le=600)] = Field(
        5.0, description="wait before starting a worker that stopped"
    )
    max_requeues: Annotated[int, Field(ge=0, le=10)] = Field(
        2, description="times a job goes back to the queue before it is marked failed"
    )
    metrics_bind: Bind = Field(
        "", description="where the local worker serves its metrics, e.g. 127.0.0.1:9465"
    )

    def options(self) -> WorkerOptions:
        return WorkerOptions.model_validate(
            self.model_dump(include=set(WorkerOptions.model_fields))
        )


class StorageConfig(BaseModel):
    model_config = STRICT

    database: str = "pseudo-dalle.sqlite3"
    keep_days: Annotated[float, Field(ge=1, le=3650)] = Field(
        30.0, description="days a finished drawing can still be continued"
    )


class HealthConfig(BaseModel):
    """A file the bot rewrites with its gateway and worker state when either changes and every
    `interval_s`, for `pseudo-dalle healthcheck` (Docker's HEALTHCHECK). Empty: no file."""

    model_config = STRICT

    heartbeat_file: str = ""
    interval_s: Annotated[float, Field(ge=1, le=300)] = 15.0


def _log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise ValueError(f"must be {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}")
    return value


class RedisConfig(BaseModel):
    """Workers on other hosts or GPUs, reached through Redis. No URL: one worker process on
    this host, no Redis needed."""

    model_config = STRICT

    url: str = Field("", description="e.g. redis://redis:6379/0; REDIS_URL wins")
    prefix: str = Field("pseudo-dalle", description="the start of every key this bot uses")


def _origin(value: str) -> str:
    """An origin such as https://cdn.discordapp.com: https, or http on loopback (tests)."""
    try:
        url = yarl.URL(value)
    except ValueError:
        url = None
    secure = url is not None and (
        url.scheme == "https" or (url.scheme == "http" and url.host in LOOPBACK)
    )
    if url is None or not secure or not url.host or str(url.origin()) != value.rstrip("/"):
        raise ValueError(
            "must be an origin such as https://cdn.discordapp.com (https, no path; http only "
            f"on 127.0.0.1 or localhost), got {value!r}"
        )
    return value.rstrip("/")


Origin = Annotated[str, AfterValidator(_origin)]


class ImagesConfig(BaseModel):
    """Pictures members give with a drawing (/draw's image, "Draw from this image")."""

    model_config = STRICT

    enabled: bool = Field(True, description="false: pictures are off on every server")
    cdn_origins: Annotated[list[Origin], Field(min_length=1)] = Field(
        default_factory=lambda: list(DISCORD_CDN), description="where pictures may come from"
    )
    fetch_timeout_s: Annotated[float, Field(ge=1, le=60)] = Field(
        10.0, description="longest wait for one picture to arrive"
    )


class MetricsConfig(BaseModel):
    """The bot's Prometheus metrics at http://`bind`/metrics. Empty: nothing listens; no
    address but the one written here is ever listened on."""

    model_config = STRICT

    bind: Bind = Field("", description="e.g. 127.0.0.1:9464")


class ModerationConfig(BaseModel):
    """What no server's prompts may say, and the words taken out of it (with AutoMod's
    wildcards: `cat`, `cat*`, `*cat`, `*cat*`; see docs/moderation.md); whether servers screen
    pictures and check prompts by meaning unless they say otherwise, and whether they may turn
    either off (the floors); the concepts every server's pictures are screened against besides
    the built-in ones."""

    model_config = STRICT

    picture_screening: bool = Field(
        True, description="screen pictures on servers that have not said (default true)"
    )
    require_picture_screening: bool = Field(
        True, description="servers cannot turn picture screening off"
    )
    prompt_meaning: bool = Field(
        False, description="check prompts by meaning on servers that have not said"
    )
    require_prompt_meaning: bool = Field(
        False, description="servers cannot turn the prompt meaning check off"
    )
    picture_concepts: Annotated[
        list[Concept], Field(max_length=MAX_JOB_CONCEPTS - MAX_SERVER_CONCEPTS)
    ] = Field(
        default_factory=list,
        description="more concepts for every server's pictures: { text = ..., threshold = ... }",
    )

    blocked_terms: Annotated[list[Term], Field(max_length=MAX_TERMS)] = Field(
        default_factory=list, description="terms no prompt on any server may say"
    )
    allowed_terms: Annotated[list[Term], Field(max_length=MAX_TERMS)] = Field(
        default_factory=list, description="words the blocked terms never take in"
    )


class LoggingConfig(BaseModel):
    model_config = STRICT

    level: Annotated[str, AfterValidator(_log_level)] = "INFO"


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    discord: DiscordConfig = DiscordConfig()
    models: ModelChoice = ModelChoice()
    worker: WorkerConfig = WorkerConfig()
    limits: HardLimits = HardLimits()
    defaults: GuildLimits = GuildLimits()
    storage: StorageConfig = StorageConfig()
    health: HealthConfig = HealthConfig()
    redis: RedisConfig = RedisConfig()
    images: ImagesConfig = ImagesConfig()
    metrics: MetricsConfig = MetricsConfig()
    moderation: ModerationConfig = ModerationConfig()
    logging: LoggingConfig = LoggingConfig()
    path: Path = Field(Path("config.toml"), exclude=True)

    def resolve(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).absolute()

    def worker_configuration(self, worker_id: str) -> Configure:
        """What the local worker is told before it loads anything: paths made absolute."""
        cache = str(self.resolve(self.models.cache_dir)) if self.models.cache_dir else ""
        models = self.models.model_copy(update={"cache_dir": cache})
        return Configure(worker_id=worker_id, models=models, options=self.worker.options())

    def shared_settings(self) -> SharedSettings:
        """What workers reached through Redis load and how they draw (each host keeps its own
        weights cache)."""
        models = self.models.model_copy(update={"cache_dir": ""})
        return SharedSettings(models=models, options=self.worker.options())


_KINDS = {
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text",
    "finite_number": "a finite number",
}


def _problem(error: ErrorDetails) -> str:
    """One pydantic error as the operator should read it."""
    loc = tuple(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return (
            f"unknown section [{loc[0]}]"
            if len(loc) == 1
            else f"unknown setting [{loc[0]}] {loc[1]}"
        )
    if error["type"] in ("model_type", "dict_type"):
        return f"[{loc[0]}] must be a table"
    return f"[{loc[0]}] {'.'.join(loc[1:])} {_requirement(error, loc)}"


def _requirement(error: ErrorDetails, loc: tuple[str, ...]) -> str:
    kind, value = error["type"], error.get("input")
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}, got {value!r}"
    section = Config.model_fields[loc[0]].annotation
    in_range = kind in ("greater_than_equal", "less_than_equal") and isinstance(section, type)
    span = bounds(section, loc[1]) if in_range and isinstance(section, type) else None
    if span is not None:
        return f"must be from {span[0]:g} to {span[1]:g}, got {value}"
    if kind == "multiple_of":
        return f"must be a multiple of {error.get('ctx', {})['multiple_of']}, got {value}"
    if kind == "value_error":
        return str(error.get("ctx", {})["error"])
    return f"is not valid: {error['msg']}"


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
    if "path" in raw:
        raise ConfigError(f"{path}: unknown section [path]")
    for (section, key), why in REMOVED.items():
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raise ConfigError(f"{path}: [{section}] {key} is no longer used; {why}")
    try:
        config = Config.model_validate({**raw, "path": path})
    except ValidationError as error:
        raise ConfigError(f"{path}: {_problem(error.errors()[0])}") from None
    token = (environ.get("DISCORD_TOKEN") or config.discord.token).strip()
    if require_token and not token:
        raise ConfigError(
            f"{path}: no bot token: set DISCORD_TOKEN in the environment or [discord] token"
        )
    _check_consistency(path, config.defaults, config.limits)
    discord = config.discord.model_copy(update={"token": token})
    redis = config.redis.model_copy(update={"url": environ.get("REDIS_URL") or config.redis.url})
    return config.model_copy(update={"discord": discord, "redis": redis})


def _check_consistency(path: Path, defaults: GuildLimits, limits: HardLimits) -> None:
    """A new server's defaults must be within the operator's limits (the quality excepted: a
    server's is lowered to the operator's where they differ)."""
    if default_beyond_maximum(defaults) is not None:
        raise ConfigError(f"{path}: [defaults] default_iterations is above max_iterations")
    if beyond := beyond_limits({n: getattr(defaults, n) for n in CONFIG_CEILINGS}, limits):
        raise ConfigError(f"{path}: [defaults] {beyond[0].name} must stay within [limits]")
