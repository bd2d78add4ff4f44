"""Which device a worker draws on: with device "auto" on a host with several GPUs, each worker
claims one that no other worker holds, through a Redis key."""

from __future__ import annotations

import redis

from generator.contract.redis_keys import PRESENCE_TTL_MS, Keys


def claim_device(
    client: redis.Redis, keys: Keys, name: str, devices: list[tuple[str, str]]
) -> tuple[str, str] | None:
    """The first of `devices` ((name, unique id) pairs, e.g. ("cuda:1", its UUID)) that no
    other worker holds, now held by `name`; None when every one is taken. Docker Compose gives
    each scaled worker every GPU (it cannot hand replicas different ones), so the workers share
    them out here."""
    for device, unique_id in devices:
        key = keys.gpu(unique_id)
        if client.set(key, name, nx=True, px=PRESENCE_TTL_MS) or client.get(key) == name:
            return device, key
    return None


def local_gpus() -> list[tuple[str, str]]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [
        (f"cuda:{index}", str(torch.cuda.get_device_properties(index).uuid))
        for index in range(torch.cuda.device_count())
    ]
