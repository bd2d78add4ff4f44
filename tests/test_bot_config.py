"""The bot's configuration and its command line."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from bot.config import DISCORD_CDN, ConfigError, ImagesConfig, load_config
from bot.limits import effective
from generator.contract.protocol import Configure, decode, encode

from .bot_harness import pseudo_dalle

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_example_config_is_complete_and_valid(tmp_path: Path) -> None:
    config = load_config(ROOT / "config.example.toml", environ={"DISCORD_TOKEN": "abc"})
    assert config.discord.token == "abc"
    assert config.limits.max_size == 512
    assert config.resolve("db.sqlite3") == ROOT / "db.sqlite3"
    assert config.images == ImagesConfig()
    assert config.images.cdn_origins == list(DISCORD_CDN)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[discord\ntoken = 1", "not valid TOML"),
        ("[limits]\nmax_iteratons = 5", "unknown setting [limits] max_iteratons"),
        ("[nonsense]\n", "unknown section [nonsense]"),
        ('[limits]\nmax_iterations = "many"', "[limits] max_iterations must be a whole number"),
        ("[limits]\nmax_size = 2000", "[limits] max_size must be from 64 to 1024"),
        ("[defaults]\nmax_size = 100", "[defaults] max_size must be a multiple of 8"),
        ("[defaults]\ndefault_iterations = 3000", "default_iterations is above max_iterations"),
        ('[logging]\nlevel = "LOUD"', "[logging] level must be"),
        (
            '[worker]\nprecision = "int8"',
            "[worker] precision must be one of auto, fp32, bf16, fp16",
        ),
        ("[worker]\nmax_batch = 0", "[worker] max_batch must be from 1 to 16"),
        ("[worker]\nthreads = -1", "[worker] threads must be from 0 to 256"),
        ('[worker]\nrelaxation = "x"', "[worker] relaxation must be one of codebook, positions"),
        ("[worker]\ncheckpointing = 1", "[worker] checkpointing must be true or false"),
        ('[worker]\ncompile = "yes"', "[worker] compile must be true or false"),
        (
            '[images]\ncdn_origins = ["http://cdn.discordapp.com"]',
            "[images] cdn_origins.0 must be an origin such as https://cdn.discordapp.com (https",
        ),
        (
            '[images]\ncdn_origins = ["https://cdn.discordapp.com/attachments"]',
            "[images] cdn_origins.0 must be an origin such as",
        ),
        ("[images]\ncdn_origins = []", "[images] cdn_origins is not valid"),
        ('[images]\nenabled = "no"', "[images] enabled must be true or false"),
        ("[images]\nfetch_timeout_s = 0", "[images] fetch_timeout_s must be from 1 to 60"),
        (
            '[storage]\nlatents_dir = "latents"',
            "[storage] latents_dir is no longer used; 0.3 no longer reads the latent files",
        ),
        (
            '[moderation]\npicture_concepts = [{ text = "a spider", threshold = 2.0 }]',
            "[moderation] picture_concepts.0.threshold is not valid",
        ),
        (
            '[moderation]\npicture_concepts = [{ text = "", threshold = 0.2 }]',
            "[moderation] picture_concepts.0.text is not valid",
        ),
        ("[moderation]\nrequire_picture_screening = 1", "must be true or false"),
    ],
)
def test_bad_configs_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, '[discord]\ntoken = "secret-token"\n' + text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(path) in str(caught.value)
    assert message in str(caught.value)
    assert "secret-token" not in str(caught.value)


def test_worker_settings_reach_the_worker_in_its_configure_message(tmp_path: Path) -> None:
    text = (
        '[models]\ncache_dir = "weights"\noffline = true\n'
        '[worker]\nprecision = "fp16"\ncheckpointing = true\ncompile = true\nmax_batch = 3\n'
        'threads = 2\nrelaxation = "positions"\ncuda_graphs = false\nmax_requeues = 4\n'
        "memory_limit_gb = 12.5\n"
    )
    config = load_config(_write(tmp_path, text), environ={"DISCORD_TOKEN": "t"})
    sent = decode(encode(config.worker_configuration("w1")))
    assert isinstance(sent, Configure)
    assert sent.worker_id == "w1"
    assert sent.options.model_dump() == {
        "cutouts": 48,
        "precision": "fp16",
        "checkpointing": True,
        "compile": True,
        "max_batch": 3,
        "relaxation": "positions",
        "cuda_graphs": False,
        "threads": 2,
        "memory_limit_gb": 12.5,
    }
    assert (sent.models.cache_dir, sent.models.offline) == (str(tmp_path / "weights"), True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[limits]\nmax_size = 1032", "[limits] max_size must be from 64 to 1024, got 1032"),
        ("[defaults]\nmax_iterations = 0", "[defaults] max_iterations must be from 1 to 100000"),
        ("[worker]\ncutouts = 257", "[worker] cutouts must be from 1 to 256, got 257"),
        ("[storage]\nkeep_days = 0", "[storage] keep_days must be from 1 to 3650"),
        ("worker = 3", "[worker] must be a table"),
        ("[defaults]\nmax_iterations = 6000", "[defaults] max_iterations must stay within"),
        ("[defaults]\nmax_size = 1024", "[defaults] max_size must stay within [limits]"),
        (
            "[limits]\nmax_queued_per_user = 3\n[defaults]\nmax_queued_per_user = 4",
            "[defaults] max_queued_per_user must stay within [limits]",
        ),
    ],
)
def test_ranges_come_from_the_declarations(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_write(tmp_path, text), environ={"DISCORD_TOKEN": "t"})


def test_a_dearer_default_quality_than_the_limit_is_lowered_not_refused(tmp_path: Path) -> None:
    """The one default that may go past `[limits]`: each server's quality is lowered to the
    operator's where it is dearer."""
    text = '[limits]\nmax_quality = "draft"\n[defaults]\nmax_quality = "best"\n'
    config = load_config(_write(tmp_path, text), environ={"DISCORD_TOKEN": "t"})
    assert (config.limits.max_quality, config.defaults.max_quality) == ("draft", "best")
    assert effective(config.defaults, config.limits).max_quality == "draft"


def test_missing_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no bot token: set DISCORD_TOKEN"):
        load_config(_write(tmp_path, "[logging]\nlevel = 'INFO'\n"), environ={})


@pytest.mark.slow
def test_bot_command_explains_itself_and_bad_configs(tmp_path: Path) -> None:
    help_text = pseudo_dalle("bot", "--help")
    assert help_text.returncode == 0
    assert "--config" in help_text.stdout
    assert "DISCORD_TOKEN" in help_text.stdout
    missing = pseudo_dalle("bot", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "copy config.example.toml" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = pseudo_dalle("bot", "--config", str(_write(tmp_path, 'token = "hunter2"\n[discord\n')))
    assert bad.returncode == 2
    assert "not valid TOML" in bad.stderr
    assert "hunter2" not in bad.stderr


def test_unreachable_discord_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = _write(
        tmp_path,
        f'[discord]\napi_base = "http://127.0.0.1:{port}/api/v10"\n'
        f'gateway_url = "ws://127.0.0.1:{port}/gateway"\n',
    )
    result = pseudo_dalle(
        "bot", "--config", str(config), env={**os.environ, "DISCORD_TOKEN": "tok-123"}
    )
    assert result.returncode == 1
    assert "cannot reach Discord at http://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
    assert "tok-123" not in result.stderr
