"""Each server's AutoMod keyword rules, kept current for `/draw` (`bot.moderation.rules`).

When a server becomes available the bot lists its rules (this needs the Manage Server
permission; without it the server's rules are not applied, which `/moderation list` says), and
the AUTO_MODERATION_RULE_CREATE, _UPDATE and _DELETE gateway events keep them current from then
on, without a restart. Only enabled keyword rules matter: the others act on what members post,
not on what they ask the bot to draw.
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.moderation.rules import AutoModRules, KeywordRule

log = logging.getLogger("pseudo_dalle.automod")


def keyword_rule(rule: discord.AutoModRule) -> KeywordRule | None:
    """`rule` as the bot applies it to prompts; None for one that does not apply to them."""
    if not rule.enabled or rule.trigger.type is not discord.AutoModRuleTriggerType.keyword:
        return None
    return KeywordRule(
        id=rule.id,
        keywords=tuple(rule.trigger.keyword_filter),
        patterns=tuple(rule.trigger.regex_patterns),
        allowed=tuple(rule.trigger.allow_list),
        exempt_roles=frozenset(rule.exempt_role_ids),
        exempt_channels=frozenset(rule.exempt_channel_ids),
    )


class AutoModSync(commands.Cog):
    """Listens for servers and their AutoMod rules, and keeps `rules` current."""

    def __init__(self, rules: AutoModRules) -> None:
        self.rules = rules
        self.readable: dict[int, bool] = {}  # by server: whether the bot may list its rules

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.load(guild)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.load(guild)

    async def load(self, guild: discord.Guild) -> None:
        """List `guild`'s rules (every rule the bot held for it is replaced)."""
        try:
            listed = await guild.fetch_automod_rules()
        except discord.Forbidden:
            log.info("server %s: no Manage Server, so its AutoMod rules do not apply", guild.id)
            self.readable[guild.id] = False
            self.rules.replace(guild.id, [])
            return
        except discord.HTTPException as error:
            log.warning("server %s: could not list its AutoMod rules: %s", guild.id, error)
            return
        self.readable[guild.id] = True
        self.rules.replace(guild.id, [r for rule in listed if (r := keyword_rule(rule))])

    @commands.Cog.listener()
    async def on_automod_rule_create(self, rule: discord.AutoModRule) -> None:
        self._put(rule)

    @commands.Cog.listener()
    async def on_automod_rule_update(self, rule: discord.AutoModRule) -> None:
        self._put(rule)

    @commands.Cog.listener()
    async def on_automod_rule_delete(self, rule: discord.AutoModRule) -> None:
        self.rules.drop(rule.guild.id, rule.id)

    def _put(self, rule: discord.AutoModRule) -> None:
        applied = keyword_rule(rule)
        if applied is None:  # disabled, or not a keyword rule (any more)
            self.rules.drop(rule.guild.id, rule.id)
        else:
            self.rules.put(rule.guild.id, applied)
