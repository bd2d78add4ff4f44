"""Where the bot and its Redis workers meet: key names and timings, shared by both sides (this
module imports neither torch nor discord). `generator.worker.redis_streams` says how they are used.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

JOB_GROUP = "workers"
BOT_GROUP = "bot"
CHECK_GROUP = "checkers"  # the workers, each prompt to check read by one of them
CHECKS_KEPT = 100  # prompts to check waiting: the bot waits CHECK_TIMEOUT_S for an answer
LEASE_MS = 15_000  # a job not renewed for this long belongs to a worker that is gone
RENEW_S = 2.0
PRESENCE_TTL_MS = 10_000
PROGRESS_KEPT = 200
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0
READ_BLOCK_MS = 2000
FLUSH_S = 5.0  # at exit: time for the last messages to reach Redis


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one bot's workers, all under `prefix`."""

    prefix: str = "pseudo-dalle"

    @property
    def settings(self) -> str:
        return f"{self.prefix}:settings"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def progress(self) -> str:
        return f"{self.prefix}:progress"

    @property
    def cancelled(self) -> str:
        return f"{self.prefix}:cancelled"

    @property
    def checks(self) -> str:
        """Prompts to check by meaning before they are queued, taken by any worker."""
        return f"{self.prefix}:checks"

    def gpu(self, unique_id: str) -> str:
        """Held by the worker drawing on that GPU, so that each GPU gets one worker."""
        return f"{self.prefix}:gpu:{unique_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:worker:*"


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
