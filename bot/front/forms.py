"""The form (modal) that asks for the words of a Reroll or an edit, filled in with the words it
would draw with, so that the member can change them (Remix, and Vary (Region), which always
asks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import discord

from bot.front.cards import shorten
from bot.front.checks import member_of
from bot.i18n import tr
from bot.jobs.desk import Member
from generator.contract.prompts import MAX_PROMPT_CHARS

FORM_TIMEOUT_S = 900.0  # an interaction's token lasts 15 minutes
MAX_TITLE_CHARS = 45  # Discord's, for a form's title
MAX_INPUT_CHARS = 4000  # Discord's, for a text input

OnWords = Callable[[Member, str], Awaitable[str]]


class WordsForm(discord.ui.Modal):
    """ "What to draw", filled in with `words`; what the member sends goes to `on_words`, whose
    answer they see privately. `description` says more under the label."""

    def __init__(
        self,
        title: str,
        words: str,
        on_words: OnWords,
        language: str,
        description: str | None = None,
    ) -> None:
        super().__init__(title=shorten(title, MAX_TITLE_CHARS), timeout=FORM_TIMEOUT_S)
        self.on_words = on_words
        # A job's words may be longer than /draw takes (its negative part joined to them).
        longest = min(MAX_INPUT_CHARS, max(MAX_PROMPT_CHARS, len(words)))
        self.words: discord.ui.TextInput[WordsForm] = discord.ui.TextInput(
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            required=False,
            max_length=longest,
            default=words[:longest] or None,
        )
        self.add_item(
            discord.ui.Label(
                text=tr(language, "What to draw"), component=self.words, description=description
            )
        )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        answer = await self.on_words(member_of(interaction), self.words.value)
        await interaction.edit_original_response(content=answer)
