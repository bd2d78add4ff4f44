"""/moderation (Manage Server only): the terms this server's prompts may not say, whether its
AutoMod keyword rules apply to them too, whether pictures are screened and prompts checked by
meaning (within the operator's floors), the concepts pictures are screened against besides the
built-in ones, spoilers in age-restricted channels, the moderation log channel, and members
barred from drawing. The operator's `[moderation]` terms and concepts apply on every server
besides, and no server can lift them."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.front.automod import AutoModSync
from bot.front.checks import admin_only
from bot.i18n import N_, language_of, tr
from bot.jobs.store import Store
from bot.limits import MAX_TERM_CHARS, MAX_TERMS, GuildSettings
from bot.moderation.policy import ScreeningPolicy
from bot.moderation.rules import PromptRules
from generator.contract.screening import (
    BUILTIN_CONCEPTS,
    MAX_CONCEPT_CHARS,
    MAX_SERVER_CONCEPTS,
    Concept,
)

SHOWN_TERMS = 50  # a list longer than this is cut short, saying how many more there are


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ModerationCog(commands.GroupCog, group_name="moderation"):
    """What this server's prompts may not say."""

    concept = app_commands.Group(
        name="concept", description="What this server's pictures are screened against"
    )

    def __init__(
        self,
        store: Store,
        rules: PromptRules,
        automod: AutoModSync,
        screening: ScreeningPolicy,
    ) -> None:
        self.store = store
        self.rules = rules
        self.automod = automod
        self.screening = screening
        super().__init__()

    def _change(self, guild_id: int, **values: object) -> None:
        settings = self.store.guild_settings(guild_id)
        self.store.save_guild_settings(guild_id, settings.model_copy(update=values))

    async def _switch(
        self,
        interaction: discord.Interaction,
        setting: str,
        on: bool,
        *,
        required: tuple[bool, str],
        answers: tuple[str, str],
    ) -> None:
        """Turns a server's `setting` on or off, unless the operator requires it on
        (`required`: whether, and what to say); `answers` say it is on, and off."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        if not on and required[0]:
            answer = tr(language, required[1])
        else:
            self._change(guild_id, **{setting: on})
            answer = tr(language, answers[0] if on else answers[1])
        await interaction.response.send_message(answer, ephemeral=True)

    @app_commands.command(name="screening")
    @admin_only()
    @app_commands.describe(on="True: pictures that may not suit a channel are withheld from it")
    async def picture_screening(self, interaction: discord.Interaction, on: bool) -> None:
        """Whether pictures are screened before they are shown."""
        await self._switch(
            interaction,
            "picture_screening",
            on,
            required=(
                self.screening.require_pictures,
                N_("The bot's operator requires picture screening on every server."),
            ),
            answers=(
                N_("Pictures are screened from the next drawing on."),
                N_("Pictures are no longer screened from the next drawing on."),
            ),
        )

    @app_commands.command(name="meaning")
    @admin_only()
    @app_commands.describe(on="True: prompts close in meaning to unsafe concepts are refused")
    async def prompt_meaning(self, interaction: discord.Interaction, on: bool) -> None:
        """Whether prompts are checked by what they mean, in any language."""
        await self._switch(
            interaction,
            "prompt_meaning",
            on,
            required=(
                self.screening.require_meaning,
                N_("The bot's operator requires the prompt meaning check on every server."),
            ),
            answers=(
                N_("Prompts are checked by meaning from the next drawing on."),
                N_("Prompts are no longer checked by meaning from the next drawing on."),
            ),
        )

    @app_commands.command(name="spoiler_in_age_restricted")
    @admin_only()
    @app_commands.describe(on="True: in age-restricted channels, such pictures are spoilers")
    async def spoiler(self, interaction: discord.Interaction, on: bool) -> None:
        """Whether pictures the screening flags are spoilers in age-restricted channels."""
        await self._switch(
            interaction,
            "spoiler_in_age_restricted",
            on,
            required=(False, ""),
            answers=(
                N_(
                    "In age-restricted channels, pictures the screening flags are shown as "
                    "spoilers."
                ),
                N_(
                    "In age-restricted channels, pictures the screening flags are shown as they "
                    "are."
                ),
            ),
        )

    @app_commands.command(name="log_channel")
    @admin_only()
    @app_commands.describe(channel="Where reports, refused prompts and withheld pictures go")
    async def log_channel(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        """The channel moderators read: reports, refused prompts, withheld pictures."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        self._change(guild_id, log_channel=channel.id if channel is not None else 0)
        answer = (
            tr(language, "The moderation log goes to <#{channel}> from now on.", channel=channel.id)
            if channel is not None
            else tr(language, "There is no moderation log channel any more.")
        )
        await interaction.response.send_message(answer, ephemeral=True)

    @app_commands.command(name="bar")
    @admin_only()
    @app_commands.describe(member="The member who may no longer draw here")
    async def bar(self, interaction: discord.Interaction, member: discord.Member) -> None:
        """Bar a member from drawing on this server."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        if self.store.bar(guild_id, member.id, by=interaction.user.id):
            answer = tr(language, "<@{member}> can no longer draw here.", member=member.id)
        else:
            answer = tr(language, "<@{member}> is barred already.", member=member.id)
        await interaction.response.send_message(answer, ephemeral=True)

    @app_commands.command(name="unbar")
    @admin_only()
    @app_commands.describe(member="A member barred from drawing here")
    async def unbar(self, interaction: discord.Interaction, member: discord.Member) -> None:
        """Let a barred member draw again."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        if self.store.unbar(guild_id, member.id):
            answer = tr(language, "<@{member}> can draw here again.", member=member.id)
        else:
            answer = tr(language, "<@{member}> is not barred.", member=member.id)
        await interaction.response.send_message(answer, ephemeral=True)

    @concept.command(name="add")
    @admin_only()
    @app_commands.describe(
        text="What pictures must not show, in English, e.g. a spider",
        threshold="How close a picture may come (CLIP cosine similarity, e.g. 0.25; lower "
        "withholds more)",
    )
    async def concept_add(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, MAX_CONCEPT_CHARS],
        threshold: app_commands.Range[float, -1.0, 1.0],
    ) -> None:
        """Screen this server's pictures for something more."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        settings = self.store.guild_settings(guild_id)
        written = text.strip()
        kept = [c for c in settings.picture_concepts if c.text != written]
        if not written:
            answer = tr(language, "A concept needs words.")
        elif len(kept) >= MAX_SERVER_CONCEPTS:
            answer = tr(
                language,
                "This server screens for {count} concepts, the most it can: remove one first.",
                count=len(kept),
            )
        else:
            concept = Concept(text=written, threshold=threshold)
            self._change(guild_id, picture_concepts=(*kept, concept))
            answer = tr(
                language,
                "Pictures closer than {threshold:g} to “{text}” are withheld from channels that "
                "are not age-restricted, from the next drawing on.",
                threshold=threshold,
                text=written,
            )
        await interaction.response.send_message(answer, ephemeral=True)

    @concept.command(name="remove")
    @admin_only()
    @app_commands.describe(text="A concept this server screens for, as /moderation list shows")
    async def concept_remove(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, MAX_CONCEPT_CHARS]
    ) -> None:
        """Stop screening this server's pictures for a concept."""
        language, guild_id = language_of(str(interaction.locale)), interaction.guild_id or 0
        settings = self.store.guild_settings(guild_id)
        written = text.strip()
        kept = tuple(c for c in settings.picture_concepts if c.text != written)
        if len(kept) == len(settings.picture_concepts):
            answer = tr(language, "This server does not screen for “{text}”.", text=written)
        else:
            self._change(guild_id, picture_concepts=kept)
            answer = tr(language, "Pictures are no longer screened for “{text}”.", text=written)
        await interaction.response.send_message(answer, ephemeral=True)

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
            *self._screening_lines(language, guild_id, settings),
        ]
        embed = discord.Embed(title=tr(language, "Moderation"), description="\n".join(lines))
        await interaction.response.send_message(embed=embed, ephemeral=True)

    def _screening_lines(self, language: str, guild_id: int, settings: GuildSettings) -> list[str]:
        screening = self.screening
        count = len(BUILTIN_CONCEPTS) + len(screening.concepts)
        if not screening.pictures_on(settings):
            pictures = tr(language, "Picture screening: off (/moderation screening)")
        elif screening.require_pictures:
            pictures = tr(
                language,
                "Picture screening: on, for {count} concepts of the bot's (its operator "
                "requires it)",
                count=count,
            )
        else:
            pictures = tr(
                language, "Picture screening: on, for {count} concepts of the bot's", count=count
            )
        concepts = ", ".join(
            "`" + c.text.replace("`", "'") + f"` ({c.threshold:g})"
            for c in settings.picture_concepts
        )
        return [
            pictures,
            tr(language, "Screened for on this server too: {concepts}", concepts=concepts)
            if concepts
            else tr(language, "Screened for on this server too: nothing (/moderation concept add)"),
            tr(language, "Prompt meaning check: on")
            if screening.meaning_on(settings)
            else tr(language, "Prompt meaning check: off (/moderation meaning)"),
            tr(language, "In age-restricted channels: flagged pictures are spoilers")
            if settings.spoiler_in_age_restricted
            else tr(language, "In age-restricted channels: flagged pictures are shown as they are"),
            tr(language, "Moderation log: <#{channel}>", channel=settings.log_channel)
            if settings.log_channel
            else tr(language, "Moderation log: none (/moderation log_channel)"),
            tr(
                language,
                "Members barred from drawing: {count}",
                count=self.store.barred_count(guild_id),
            ),
        ]

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
