"""Where a process serves its Prometheus metrics, written one way for all of them: the bot's
`[metrics] bind`, the local worker's `[worker] metrics_bind` and `pseudo-dalle worker
--metrics-bind` (or `PSEUDO_DALLE_METRICS_BIND`). Empty means off: nothing listens.
"""

from __future__ import annotations

from urllib.parse import urlsplit

METRICS_BIND_ENV = "PSEUDO_DALLE_METRICS_BIND"
EXAMPLE_BIND = "127.0.0.1:9464"


def parse_bind(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets, [::1]:9464) as (host, port); ValueError saying what
    is wrong. No host is assumed: a public address is listened on only when it is written."""
    try:
        parts = urlsplit(f"//{text.strip()}")
        host, port = parts.hostname, parts.port
        extra = parts.path or parts.query or parts.fragment or parts.username
    except ValueError:
        host, port, extra = None, None, ""
    if not host or not port or extra:
        raise ValueError(
            f"must be HOST:PORT such as {EXAMPLE_BIND} (port 1 to 65535), got {text!r}"
        )
    return host, port
