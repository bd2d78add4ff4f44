"""The ``pseudo-dalle`` console command: the engine's commands (``draw``, ``fetch-weights``,
``worker``) and the bot's (``bot``, ``healthcheck``), with ``doctor`` over both.

This package is the composition root: it stands above `generator` and `bot`, which never import
it. Nothing heavy is imported up front: ``pseudo-dalle bot`` loads discord.py (never torch), the
drawing commands load torch (never discord).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from generator.cli.commands import build_parser, run


def _add_bot(commands: argparse._SubParsersAction[Any]) -> None:
    bot = commands.add_parser(
        "bot",
        help="run the Discord bot",
        description="Run the Discord bot. The token comes from DISCORD_TOKEN or the config "
        "file; config.example.toml documents every setting.",
    )
    bot.add_argument(
        "--config",
        type=Path,
        default=Path("config.toml"),
        metavar="FILE",
        help="the bot's TOML configuration (default ./config.toml)",
    )
    bot.set_defaults(handler=_run_bot)
    health = commands.add_parser(
        "healthcheck",
        help="exit 0 if the running bot is healthy",
        description="Read the bot's heartbeat file ([health] heartbeat_file) and exit 0 when it "
        "is fresh and the gateway and worker are up, else print why and exit 1.",
    )
    health.add_argument("--file", type=Path, required=True, help="the heartbeat file")
    health.add_argument(
        "--max-age",
        type=float,
        default=90.0,
        metavar="SECONDS",
        help="oldest acceptable heartbeat (default 90)",
    )
    health.set_defaults(handler=_healthcheck)
    doctor = commands.add_parser(
        "doctor",
        help="print what an operator needs when something is wrong",
        description="Print versions, the device and its free memory, where the weights are and "
        "whether their checksums match, the database, the bot's health, and whether a token is "
        "set (never the token itself).",
    )
    doctor.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="the bot's configuration (default: report on the built-in defaults)",
    )
    doctor.set_defaults(handler=_doctor)


def _run_bot(args: argparse.Namespace) -> int:
    from bot.ops.launcher import main as launch

    return launch(args.config)


def _healthcheck(args: argparse.Namespace) -> int:
    from bot.ops.health import check_heartbeat

    problem = check_heartbeat(args.file, args.max_age)
    print(problem or "healthy")
    return 1 if problem else 0


def _doctor(args: argparse.Namespace) -> int:
    from pseudo_dalle.doctor import report

    print("\n".join(report(args.config)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(_add_bot).parse_args(argv))
