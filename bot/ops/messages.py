"""Keep the message catalogs up to date: `make messages` (`python -m bot.ops.messages`).

It collects every message the bot can say: those in the code (`tr(language, "…")` and `N_`),
found with Babel's extractor, the sentences of every reason a worker or a picture's intake can
give (`generator.contract.reasons`), and the slash commands' names, option names and
descriptions, read from the cogs. It writes the template `bot/locales/pseudo_dalle.pot` and
updates each language's catalog: new messages appear there untranslated, messages no longer
used are dropped.
A test fails while any message lacks a translation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po
from discord import app_commands
from discord.ext import commands

from bot.front.cogs.admin import AdminCog
from bot.front.cogs.draw import DrawCog
from bot.front.cogs.draw_from_image import MENU_NAME
from bot.front.cogs.help import HelpCog
from bot.front.cogs.moderation import ModerationCog
from bot.front.cogs.queue import QueueCog
from bot.front.cogs.settings import SettingsCog
from bot.i18n import DOMAIN, LANGUAGES, LOCALES, SOURCE_LANGUAGE
from generator.contract.reasons import REASONS

BOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"tr": (2,), "N_": None, "notice": None}
COGS = (DrawCog, QueueCog, AdminCog, HelpCog, ModerationCog, SettingsCog)


def code_messages() -> Iterator[str]:
    """The messages marked in the bot's code."""
    for _, _, message, _, _ in extract_from_dir(
        BOT, method_map=[("**.py", "python")], keywords=KEYWORDS, comment_tags=()
    ):
        if isinstance(message, str):
            yield message


def reason_messages() -> Iterator[str]:
    """The sentence of every reason, which the bot translates wherever it shows one."""
    for reason in REASONS.values():
        yield reason.template


def command_messages() -> Iterator[str]:
    """The names, option names, descriptions and choices of every slash command (a group's
    subcommands too), and the context menu's name."""
    for cog in COGS:
        if issubclass(cog, commands.GroupCog):  # its commands are one command's subcommands
            yield str(cog.__cog_group_name__)
            yield str(cog.__cog_group_description__)
        for command in cog.__cog_app_commands__:
            yield from _command_messages(command)
    yield MENU_NAME


def _command_messages(
    command: app_commands.Command[Any, ..., Any] | app_commands.Group,
) -> Iterator[str]:
    yield command.name
    yield command.description
    for parameter in getattr(command, "parameters", []):
        yield parameter.display_name
        yield parameter.description
        yield from (choice.name for choice in parameter.choices)
    for subcommand in getattr(command, "commands", []):
        yield from _command_messages(subcommand)


def all_messages() -> list[str]:
    return sorted(set(code_messages()) | set(reason_messages()) | set(command_messages()))


def update() -> None:
    template = Catalog(domain=DOMAIN, project="pseudo-dalle")
    for message in all_messages():
        template.add(message)
    with (LOCALES / f"{DOMAIN}.pot").open("wb") as pot:
        write_po(pot, template, omit_header=True, sort_output=True)
    for language in LANGUAGES:
        if language == SOURCE_LANGUAGE:
            continue
        path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        with path.open("rb") as po:
            catalog = read_po(po, locale=language, domain=DOMAIN)
        catalog.update(template, no_fuzzy_matching=True)
        with path.open("wb") as po:
            write_po(po, catalog, omit_header=True, sort_output=True, ignore_obsolete=True)


if __name__ == "__main__":
    update()
