"""Which channels are age-restricted, as far as the bot's cache of Discord knows.

A channel is age-restricted when Discord's `nsfw` flag is set on it; a thread goes by its
parent's; a channel (or a thread's parent) the bot has not cached counts as not age-restricted,
so that not knowing never shows a picture that may not suit a channel.
"""

from __future__ import annotations

from collections.abc import Callable

import discord


def age_restricted(client: discord.Client) -> Callable[[int, int], bool]:
    """Whether a channel of a server is age-restricted, as far as `client`'s cache knows."""

    def check(guild_id: int, channel_id: int) -> bool:
        channel = client.get_channel(channel_id)
        if isinstance(channel, discord.Thread):
            parent = channel.parent
            return parent is not None and parent.is_nsfw()
        is_nsfw = getattr(channel, "is_nsfw", None)
        return bool(is_nsfw()) if callable(is_nsfw) else False

    return check
