"""Whether a picture a worker sent may be shown where its job was asked for.

The worker scores every picture it sends (`generator.contract.screening`); the bot decides
here. In a channel that is not age-restricted (Discord's `nsfw` flag off; a thread goes by its
parent's; a channel the bot has not cached counts as not age-restricted), a picture that crosses
the job's screening is never shown: the job is marked withheld, and from then on none of its
pictures is, previews, final picture and time-lapse alike. In an age-restricted channel it is
shown, as a spoiler where the server says so. A picture the worker could not screen counts as
crossing: screening fails closed.

Which channels are age-restricted only the front end knows; it gives the gate a function
saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.jobs.store import JobRow, Store
from generator.contract.screening import Scores, crossed

# (guild_id, channel_id) -> whether the channel (a thread: its parent) is age-restricted.
AgeRestricted = Callable[[int, int], bool]


def never_age_restricted(guild_id: int, channel_id: int) -> bool:
    """For a bot that cannot tell: no channel is."""
    return False


@dataclass(frozen=True)
class Verdict:
    """What the screening of one picture came to: what it `crossed`, whether it may be shown,
    and whether only as a spoiler."""

    crossed: tuple[str, ...]
    show: bool
    spoiler: bool = False


class PictureGate:
    def __init__(self, store: Store, age_restricted: AgeRestricted = never_age_restricted) -> None:
        self.store = store
        self.age_restricted = age_restricted

    def verdict(self, job: JobRow, scores: Scores | None) -> Verdict:
        """Whether a picture of `job` with these `scores` may be shown in its channel."""
        found = crossed(job.spec.screening, scores)
        if job.withheld:
            return Verdict(found, show=False)
        if not found:
            return Verdict(found, show=True)
        if self.age_restricted(job.guild_id, job.channel_id):
            spoiler = self.store.guild_settings(job.guild_id).spoiler_in_age_restricted
            return Verdict(found, show=True, spoiler=spoiler)
        return Verdict(found, show=False)
