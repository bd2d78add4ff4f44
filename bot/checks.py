"""Who may do what. Admin commands also carry `default_permissions`, which is only a hint to
Discord's client: the check here is what enforces it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import discord
from discord import app_commands

from bot.i18n import language_of, tr

T = TypeVar("T")


class NotAdmin(app_commands.CheckFailure):
    """The member lacks Manage Server."""


def is_admin(interaction: discord.Interaction) -> bool:
    return bool(interaction.guild is not None and interaction.permissions.manage_guild)


def may_manage_job(interaction: discord.Interaction, owner_id: int) -> bool:
    """The requester and server admins may cancel or delete a job."""
    return interaction.user.id == owner_id or is_admin(interaction)


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
