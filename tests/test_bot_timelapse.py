"""The time-lapse on the final card: the real bot and the fake Discord, with a puppet worker that
sends an animation when the job's spec asks for one (the worker's own time-lapse is tested in
tests/test_worker_core.py)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from generator.contract.protocol import StartJob
from generator.media.animation import best_format, encode_animation

from .bot_harness import custom_ids, run, running_bot, text_of, wait_for_card
from .conftest import ModelFiles
from .fake_discord import ADMIN, ALICE, DEFAULT_UPLOAD_LIMIT, Event
from .fake_workers import FakeWorkers

pytestmark = pytest.mark.e2e

FORMAT = best_format()
SUFFIX = f".{FORMAT.lower()}"


def timelapse_of(start: StartJob, seed: int = 0) -> bytes:
    """A time-lapse as a worker makes one for `start`: a frame a step (of noise, which does not
    compress), then the final picture."""
    spec, noise = start.spec, random.Random(seed)
    frames = [
        Image.frombytes(
            "RGB", (spec.width, spec.height), noise.randbytes(spec.width * spec.height * 3)
        )
        for _ in range(spec.iterations + 1)
    ]
    return encode_animation(frames, FORMAT)


def finish_as_asked(workers: FakeWorkers, start: StartJob) -> None:
    """The job ends after all its steps, with a time-lapse when its spec asks for one."""
    animation = timelapse_of(start) if start.spec.timelapse else None
    workers.finish(start.job_id, start.spec.iterations, timelapse=animation)


def _animation(card: Event, job_id: int) -> tuple[int, int, tuple[int, int]]:
    """Bytes, frames and size of the time-lapse on a card."""
    data = card.files[f"pseudo-dalle-{job_id}-timelapse{SUFFIX}"]
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == FORMAT
        return len(data), image.n_frames, image.size  # type: ignore[attr-defined]


def test_a_timelapse_on_request_and_smaller_when_the_upload_limit_is(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        workers = FakeWorkers()
        async with running_bot(tmp_path, model_files, transport=workers) as (fake, running, config):
            workers.join(clip_models=(config.models.clip,))
            asked = await fake.command(
                ALICE, "draw", prompt="a lighthouse", iterations=60, size=64, timelapse=True
            )
            assert "Queued as job 1" in await fake.reply_to(asked)
            first = await workers.next_job(1)
            assert first.spec.timelapse
            finish_as_asked(workers, first)
            final = await wait_for_card(fake, 1, "Finished")
            assert set(final.files) == {"pseudo-dalle-1.png", f"pseudo-dalle-1-timelapse{SUFFIX}"}
            embed = final.payload["embeds"][0]
            assert embed["image"]["url"] == "attachment://pseudo-dalle-1.png"
            size, frames, shape = _animation(final, 1)
            assert size <= DEFAULT_UPLOAD_LIMIT
            assert frames == 61  # as the worker sent it: a frame a step, then the final picture
            assert shape == (64, 64)
            assert running.store.job(1).spec.timelapse  # type: ignore[union-attr]

            # Reroll keeps the choice; the server now takes only files half as big.
            fake.upload_limit = size // 2
            assert custom_ids(final)[0] == "draw:reroll:1"
            assert final.message_id is not None
            await fake.reply_to(await fake.click(ALICE, final.message_id, "draw:reroll:1"))
            rerolled = await workers.next_job(2)
            assert rerolled.spec.timelapse
            finish_as_asked(workers, rerolled)
            smaller = await wait_for_card(fake, 2, "Finished")
            assert fake.too_large, "the first, full-size post should have been refused"
            size2, frames2, _ = _animation(smaller, 2)
            assert size2 <= fake.upload_limit
            assert 1 < frames2 < frames
            assert "too big" not in text_of(smaller)

    run(scenario())


def test_the_server_default_and_a_members_choice(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        workers = FakeWorkers()
        async with running_bot(tmp_path, model_files, transport=workers) as (fake, _, config):
            workers.join(clip_models=(config.models.clip,))
            plain = await fake.command(ALICE, "draw", prompt="a fox", iterations=5, size=64)
            assert "job 1" in await fake.reply_to(plain)
            finish_as_asked(workers, await workers.next_job(1))
            assert set((await wait_for_card(fake, 1, "Finished")).files) == {"pseudo-dalle-1.png"}
            said = await fake.reply_to(await fake.command(ADMIN, "drawconfig", timelapse=True))
            assert "Time-lapse on the final card: on unless a member says otherwise" in said
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a fox", iterations=5, size=64)
            )
            finish_as_asked(workers, await workers.next_job(2))
            _, frames, _ = _animation(await wait_for_card(fake, 2, "Finished"), 2)
            assert frames == 6
            await fake.reply_to(
                await fake.command(
                    ALICE, "draw", prompt="a fox", iterations=5, size=64, timelapse=False
                )
            )
            finish_as_asked(workers, await workers.next_job(3))
            assert set((await wait_for_card(fake, 3, "Finished")).files) == {"pseudo-dalle-3.png"}

    run(scenario())
