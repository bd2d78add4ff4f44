"""The ``pseudo-dalle`` console command: the generator's commands plus ``bot``.

Nothing heavy is imported up front: ``pseudo-dalle bot`` loads discord.py (never torch), the
drawing commands load torch (never discord).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from generator.cli import build_parser, run


def _add_bot(commands: argparse._SubParsersAction[Any]) -> None:
    bot = commands.add_parser(
        "bot",
        help="run the Discord bot",
        description="Run the Discord bot. The token comes from DISCORD_TOKEN or the config "
        "file; config.example.toml documents every setting.",
    )
    bot.add_argument(
        "--config", type=Path, default=Path("config.toml"), metavar="FILE",
        help="the bot's TOML configuration (default ./config.toml)",
    )  # fmt: skip
    bot.set_defaults(handler=_run_bot)


def _run_bot(args: argparse.Namespace) -> int:
    from bot.launcher import main as launch

    return launch(args.config)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(_add_bot).parse_args(argv))
