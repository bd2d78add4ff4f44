"""The time-lapse on the final card: the real bot, the fake Discord and the real worker."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, features

from .bot_harness import custom_ids, run, running_bot, text_of, wait_for_card
from .conftest import ModelFiles
from .fake_discord import ADMIN, ALICE, DEFAULT_UPLOAD_LIMIT, Event

pytestmark = pytest.mark.e2e

SUFFIX = ".webp" if features.check("webp") else ".gif"


def _animation(card: Event, job_id: int) -> tuple[int, int, tuple[int, int]]:
    """Bytes, frames and size of the time-lapse on a card."""
    data = card.files[f"pseudo-dalle-{job_id}-timelapse{SUFFIX}"]
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == SUFFIX[1:].upper()
        return len(data), image.n_frames, image.size  # type: ignore[attr-defined]


def test_a_timelapse_on_request_and_smaller_when_the_upload_limit_is(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            asked = await fake.command(
                ALICE, "draw", prompt="a lighthouse", iterations=60, size=64, timelapse=True
            )
            assert "Queued as job 1" in await fake.reply_to(asked)
            final = await wait_for_card(fake, 1, "Finished")
            assert set(final.files) == {"pseudo-dalle-1.png", f"pseudo-dalle-1-timelapse{SUFFIX}"}
            embed = final.payload["embeds"][0]
            assert embed["image"]["url"] == "attachment://pseudo-dalle-1.png"
            size, frames, shape = _animation(final, 1)
            assert size <= DEFAULT_UPLOAD_LIMIT
            assert frames == 61  # a frame a step, then the final picture
            assert shape == (64, 64)
            assert running.store.job(1).timelapse  # type: ignore[union-attr]

            # Reroll keeps the choice; the server now takes only files half as big.
            fake.upload_limit = size // 2
            assert custom_ids(final)[0] == "draw:reroll:1"
            assert final.message_id is not None
            await fake.reply_to(await fake.click(ALICE, final.message_id, "draw:reroll:1"))
            smaller = await wait_for_card(fake, 2, "Finished")
            assert fake.too_large, "the first, full-size post should have been refused"
            size2, frames2, _ = _animation(smaller, 2)
            assert size2 <= fake.upload_limit
            assert 1 < frames2 < frames
            assert "too big" not in text_of(smaller)

    run(scenario())


def test_the_server_default_and_a_members_choice(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, _, _):
            plain = await fake.command(ALICE, "draw", prompt="a fox", iterations=5, size=64)
            assert "job 1" in await fake.reply_to(plain)
            assert set((await wait_for_card(fake, 1, "Finished")).files) == {"pseudo-dalle-1.png"}
            said = await fake.reply_to(await fake.command(ADMIN, "drawconfig", timelapse=True))
            assert "Time-lapse on the final card: on unless a member says otherwise" in said
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a fox", iterations=5, size=64)
            )
            _, frames, _ = _animation(await wait_for_card(fake, 2, "Finished"), 2)
            assert frames == 6
            await fake.reply_to(
                await fake.command(
                    ALICE, "draw", prompt="a fox", iterations=5, size=64, timelapse=False
                )
            )
            assert set((await wait_for_card(fake, 3, "Finished")).files) == {"pseudo-dalle-3.png"}

    run(scenario())
