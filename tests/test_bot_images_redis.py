"""Pictures in through Redis: a real `pseudo-dalle worker` process draws a job that starts from
and steers towards a member's picture, which travels in the job's stream entry and leaves Redis
with it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.workers.redis_streams import RedisWorkers
from generator.contract.jobs import PictureData
from generator.contract.protocol import StartJob, png_to_b64
from generator.contract.redis_keys import Keys
from generator.intake.images import reencode, sha256

from .bot_harness import cards_of, run, running_bot, text_of, wait_for_card
from .conftest import ModelFiles
from .fake_discord import ALICE
from .redis_harness import RedisServer, WorkerProcess
from .test_bot_images import ROOMY, given_file, picture, shows_thumbnail

pytestmark = [pytest.mark.redis, pytest.mark.e2e, pytest.mark.slow]


async def until(check: Callable[[], Any], timeout: float = 60) -> Any:
    async def poll() -> Any:
        while not (found := check()):
            await asyncio.sleep(0.05)
        return found

    return await asyncio.wait_for(poll(), timeout)


def test_a_redis_worker_draws_a_picture_job(
    model_files: ModelFiles,
    tmp_path: Path,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[StartJob] = []
    dispatch = RedisWorkers.dispatch

    async def recording(self: RedisWorkers, job: StartJob) -> str | None:
        sent.append(job)
        return await dispatch(self, job)

    monkeypatch.setattr(RedisWorkers, "dispatch", recording)
    lamp = picture(seed=7)
    copy = reencode(lamp)
    client = redis.Redis.from_url(redis_server.url)

    def in_stream(*texts: str) -> list[bool]:
        entries = str(client.xrange(Keys().jobs))
        return [text in entries for text in texts]

    async def scenario() -> None:
        url = f'url = "{redis_server.url}"'
        async with running_bot(tmp_path, model_files, redis=url, defaults=ROOMY) as (fake, _, _):
            attachment = fake.attachment("lamp.png", lamp, "image/png")
            asked = await fake.command(
                ALICE,
                "draw",
                prompt="a lamp",
                image=attachment,
                image_as="both",
                strength=0.6,
                iterations=60,
                size=64,
            )
            assert "Queued as job 1" in await fake.reply_to(asked)
            worker = WorkerProcess(redis_server.url, "gpu-a", tmp_path / "gpu-a.log")
            try:
                await fake.wait_for(lambda: sent, timeout=120)
                # The spec names the picture and its bytes travel beside it, in the entry.
                named, carried = sent[0].spec.image_prompts[0].sha256, png_to_b64(copy)
                await until(lambda: in_stream(named, carried) == [True, True])
                final = await wait_for_card(fake, 1, "Finished", timeout=120)
                assert "60 iterations in" in text_of(final)
                assert all(given_file(e, 1) and shows_thumbnail(e, 1) for e in cards_of(fake, 1))
                await until(lambda: in_stream(named, carried) == [False, False])
            finally:
                worker.kill()
        (job,) = sent
        assert job.spec.init_image is not None
        assert job.spec.init_image.sha256 == sha256(copy)
        assert (job.spec.init_strength, job.spec.image_prompts) == (0.6, (job.spec.init_image,))
        assert job.pictures == [PictureData(sha256=sha256(copy), png_b64=png_to_b64(copy))]

    run(scenario())
