"""/moderation: the terms this server's prompts may not say, and whether its AutoMod keyword
rules apply to them too (Manage Server only). The operator's `[moderation]` terms apply on
every server besides, and no server can lift them."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.front.automod import AutoModSync
from bot.front.checks import admin_only
from bot.i18n import N_, language_of, tr
from bot.jobs.store import Store
from bot.limits import MAX_TERM_CHARS, MAX_TERMS
from bot.moderation.rules import PromptRules

SHOWN_TERMS = 50  # a list longer than this is cut short, saying how many more there are


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ModerationCog(commands.GroupCog, group_name="moderation"):
    """What this server's prompts may not say."""

    def __init__(self, store: Store, rules: PromptRules, automod: AutoModSync) -> None:
        self.store = store
        self.rules = rules
        self.automod = automod
        super().__init__()

    @app_commands.command(name="block")
    @admin_only()
    @app_commands.describe(
        term="A word or phrase; cat* blocks the words it starts, *cat* any word with it inside"
    )
    async def block(
        self, interaction: discord.Interaction, term: app_commands.Range[str, 1, MAX_TERM_CHARS]
    ) -> None:
        """Refuse prompts that say this term."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        settings = self.store.guild_settings(guild_id)
        written = term.strip()
        if not written.strip("*"):
            answer = tr(language, "A term needs letters, not only wildcards.")
        elif written in settings.blocked_terms:
            answer = tr(language, "“{term}” is blocked already.", term=written)
        elif len(settings.blocked_terms) >= MAX_TERMS:
            answer = tr(
                language,
                "This server blocks {count} terms, the most it can: unblock one first.",
                count=len(settings.blocked_terms),
            )
        else:
            blocked = (*settings.blocked_terms, written)
            self.store.save_guild_settings(
                guild_id, settings.model_copy(update={"blocked_terms": blocked})
            )
            answer = tr(
                language, "Prompts that say “{term}” are refused from now on.", term=written
            )
        await interaction.response.send_message(answer, ephemeral=True)

    @app_commands.command(name="unblock")
    @admin_only()
    @app_commands.describe(term="A term this server blocks, as /moderation list shows it")
    async def unblock(
        self, interaction: discord.Interaction, term: app_commands.Range[str, 1, MAX_TERM_CHARS]
    ) -> None:
        """Stop refusing prompts for this term."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        settings = self.store.guild_settings(guild_id)
        written = term.strip()
        if written not in settings.blocked_terms:
            answer = tr(language, "This server does not block “{term}”.", term=written)
        else:
            kept = tuple(t for t in settings.blocked_terms if t != written)
            self.store.save_guild_settings(
                guild_id, settings.model_copy(update={"blocked_terms": kept})
            )
            answer = tr(language, "“{term}” is no longer blocked here.", term=written)
        await interaction.response.send_message(answer, ephemeral=True)

    @app_commands.command(name="automod")
    @admin_only()
    @app_commands.describe(apply="True: this server's AutoMod keyword rules refuse prompts too")
    async def automod_rules(self, interaction: discord.Interaction, apply: bool) -> None:
        """Whether this server's AutoMod keyword rules apply to prompts."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        settings = self.store.guild_settings(guild_id)
        self.store.save_guild_settings(guild_id, settings.model_copy(update={"automod": apply}))
        said = (
            N_("This server's AutoMod keyword rules now refuse prompts too.")
            if apply
            else N_("This server's AutoMod keyword rules no longer apply to prompts.")
        )
        await interaction.response.send_message(tr(language, said), ephemeral=True)

    @app_commands.command(name="list")
    @admin_only()
    async def list_terms(self, interaction: discord.Interaction) -> None:
        """What this server's prompts may not say."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        settings = self.store.guild_settings(guild_id)
        terms = settings.blocked_terms
        # In code spans, where nothing a term holds is read as markdown (a backtick would end it).
        shown = ", ".join("`" + term.replace("`", "'") + "`" for term in terms[:SHOWN_TERMS])
        if len(terms) > SHOWN_TERMS:
            shown += " " + tr(language, "…and {count} more", count=len(terms) - SHOWN_TERMS)
        lines = [
            tr(language, "Blocked on this server: {terms}", terms=shown)
            if terms
            else tr(language, "Blocked on this server: nothing yet (/moderation block)"),
            tr(
                language,
                "Blocked by the bot's operator on every server: {count} term(s)",
                count=len(self.rules.operator.blocked),
            ),
            self._automod_line(language, guild_id, settings.automod),
        ]
        embed = discord.Embed(title=tr(language, "Moderation"), description="\n".join(lines))
        await interaction.response.send_message(embed=embed, ephemeral=True)

    def _automod_line(self, language: str, guild_id: int, applied: bool) -> str:
        if not applied:
            return tr(
                language, "AutoMod keyword rules: not applied to prompts (/moderation automod)"
            )
        if not self.automod.readable.get(guild_id, False):
            return tr(
                language,
                "AutoMod keyword rules: the bot cannot read them; give it the Manage Server "
                "permission",
            )
        return tr(
            language,
            "AutoMod keyword rules: {count} applied to prompts",
            count=len(self.rules.automod.of(guild_id)),
        )
