"""What a prompt may not say: the operator's terms, the server's own, and the server's AutoMod.

Discord's AutoMod never sees a slash command's options, so its keyword rules would not apply to
`/draw`: the front end keeps each server's keyword rules here (`AutoModRules`, from the REST
list at start and the AUTO_MODERATION_RULE_* gateway events after), and `PromptRules.check`
applies them with the operator's `[moderation]` terms and the server's `/moderation block`
terms. Only the parts of a prompt that steer towards something are checked: a negative part
steering away from a blocked term is what an admin wants.

An AutoMod rule applies as AutoMod would: only while it is enabled, not in the channels and for
the roles it exempts, its keywords with their wildcards and allow list (`bot.moderation.terms`),
its regex patterns matched case-insensitively on the prompt as typed. A pattern is run with a
time limit; one that runs out of it counts as a match, since a rule that cannot be checked
should not let a prompt through.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import regex

from bot.moderation.terms import TermList
from generator.contract.prompts import parse_prompts

log = logging.getLogger("pseudo_dalle.moderation")
REGEX_TIMEOUT_S = 0.05


class Source(StrEnum):
    """Whose rule refused a prompt (the metrics count refusals by it)."""

    OPERATOR = "operator"
    SERVER = "server"
    AUTOMOD = "automod"
    MEANING = "meaning"  # too close in meaning to an unsafe concept (the worker checks it)


@dataclass(frozen=True)
class Refusal:
    """A prompt refused: what of it matched, and whose rule it was."""

    found: str
    source: Source


@dataclass(frozen=True)
class KeywordRule:
    """One AutoMod keyword rule of a server, as the bot applies it to prompts."""

    id: int
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    exempt_roles: frozenset[int] = frozenset()
    exempt_channels: frozenset[int] = frozenset()
    _terms: TermList = field(init=False, repr=False, compare=False)
    _compiled: tuple[regex.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_terms", TermList(self.keywords, self.allowed))
        compiled = []
        for pattern in self.patterns:
            try:
                compiled.append(regex.compile(pattern, regex.IGNORECASE))
            except regex.error as error:
                log.warning(
                    "AutoMod rule %s: pattern %r is not usable: %s", self.id, pattern, error
                )
        object.__setattr__(self, "_compiled", tuple(compiled))

    def applies(self, channel_id: int, roles: Iterable[int]) -> bool:
        return channel_id not in self.exempt_channels and not self.exempt_roles & set(roles)

    def find(self, parts: Sequence[str]) -> str | None:
        """What of `parts` the rule blocks, if anything."""
        blocked = self._terms.find(parts)
        if blocked is not None:
            return blocked.found
        for part in parts:
            typed = unicodedata.normalize("NFKC", part)
            for pattern in self._compiled:
                try:
                    match = pattern.search(typed, timeout=REGEX_TIMEOUT_S)
                except TimeoutError:
                    log.warning("AutoMod rule %s: a pattern ran out of time; refusing", self.id)
                    return part
                if match is not None:
                    return match.group(0)
        return None


class AutoModRules:
    """Each server's AutoMod keyword rules, by rule id, as the front end keeps them."""

    def __init__(self) -> None:
        self._rules: dict[int, dict[int, KeywordRule]] = {}

    def replace(self, guild_id: int, rules: Iterable[KeywordRule]) -> None:
        self._rules[guild_id] = {rule.id: rule for rule in rules}

    def put(self, guild_id: int, rule: KeywordRule) -> None:
        self._rules.setdefault(guild_id, {})[rule.id] = rule

    def drop(self, guild_id: int, rule_id: int) -> None:
        self._rules.get(guild_id, {}).pop(rule_id, None)

    def of(self, guild_id: int) -> list[KeywordRule]:
        return list(self._rules.get(guild_id, {}).values())


class PromptRules:
    """The operator's terms (with their allow list) and each server's rules, checked together."""

    def __init__(self, operator: TermList, automod: AutoModRules) -> None:
        self.operator = operator
        self.automod = automod

    def check(
        self,
        prompt: str,
        *,
        guild_id: int,
        channel_id: int,
        roles: Iterable[int],
        server_terms: Sequence[str],
        use_automod: bool,
    ) -> Refusal | None:
        """Why `prompt` may not be drawn here, or None when it may."""
        parts = steering_parts(prompt)
        if not parts:
            return None
        found = self.operator.find(parts)
        if found is not None:
            return Refusal(found.found, Source.OPERATOR)
        server = TermList(server_terms, (t.text for t in self.operator.allowed)).find(parts)
        if server is not None:
            return Refusal(server.found, Source.SERVER)
        if use_automod:
            roles = set(roles)
            for rule in self.automod.of(guild_id):
                if rule.applies(channel_id, roles) and (text := rule.find(parts)) is not None:
                    return Refusal(text, Source.AUTOMOD)
        return None


def steering_parts(prompt: str) -> list[str]:
    """The parts of `prompt` that steer towards something (a positive weight)."""
    if not prompt.strip():
        return []
    return [part.text for part in parse_prompts(prompt) if part.weight > 0]
