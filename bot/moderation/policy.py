"""How a server's pictures and prompts are screened: the operator's `[moderation]` defaults and
floors, and each server's choices within them, made into a job's `ScreeningSpec` at submit.

A floor is a promise the operator makes for every server: with `require_picture_screening`, no
server can turn screening off; with `require_prompt_meaning`, none can turn the meaning check
off. A server that has not chosen (None in its settings) follows the operator's default.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.limits import GuildSettings
from generator.contract.screening import Concept, ScreeningSpec


@dataclass(frozen=True)
class ScreeningPolicy:
    """The operator's defaults (`pictures`, `meaning`), floors (`require_*`) and concepts."""

    pictures: bool = True
    require_pictures: bool = True
    meaning: bool = False
    require_meaning: bool = False
    concepts: tuple[Concept, ...] = ()

    def pictures_on(self, settings: GuildSettings) -> bool:
        chosen = settings.picture_screening
        return self.require_pictures or (self.pictures if chosen is None else chosen)

    def meaning_on(self, settings: GuildSettings) -> bool:
        chosen = settings.prompt_meaning
        return self.require_meaning or (self.meaning if chosen is None else chosen)

    def spec(self, settings: GuildSettings) -> ScreeningSpec:
        """How a job asked for now on a server with `settings` is screened."""
        return ScreeningSpec(
            pictures=self.pictures_on(settings),
            meaning=self.meaning_on(settings),
            concepts=(*self.concepts, *settings.picture_concepts),
        )
