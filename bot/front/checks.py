"""Who may do what, and who is asking. Admin commands also carry `default_permissions`, which is
only a hint to Discord's client: the check here is what enforces it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import discord
from discord import app_commands

from bot.i18n import language_of, tr
from bot.jobs.desk import Member

T = TypeVar("T")


class NotAdmin(app_commands.CheckFailure):
    """The member lacks Manage Server."""


def is_admin(interaction: discord.Interaction) -> bool:
    return bool(interaction.guild is not None and interaction.permissions.manage_guild)


def member_of(interaction: discord.Interaction) -> Member:
    """The member behind `interaction`, as the desk takes them."""
    return Member(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id or 0,
        channel_id=interaction.channel_id or 0,
        language=language_of(str(interaction.locale)),
        admin=is_admin(interaction),
        roles=tuple(role.id for role in getattr(interaction.user, "roles", ())),
    )


def admin_only() -> Callable[[T], T]:
    def predicate(interaction: discord.Interaction) -> bool:
        if not is_admin(interaction):
            raise NotAdmin(
                tr(
                    language_of(str(interaction.locale)),
                    "You need the Manage Server permission to change drawing settings.",
                )
            )
        return True

    return app_commands.check(predicate)
