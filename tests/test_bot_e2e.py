"""End-to-end: real discord.py over loopback to a fake Discord, real worker, tiny models."""

from __future__ import annotations

from pathlib import Path

from .bot_harness import cards_of, custom_ids, run, running_bot, text_of, title, wait_for_card
from .conftest import ModelFiles
from .fake_discord import Member

ALICE = Member(100000000000000001, "alice")
BOB = Member(100000000000000002, "bob")
ADMIN = Member(100000000000000003, "admin", admin=True)


def test_draw_shows_progress_and_the_final_picture(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            asked = await fake.command(
                ALICE, "draw", prompt="an image of the music", iterations=150, size=64, seed=42
            )
            assert "Queued as job 1" in await fake.reply_to(asked)
            beats_before = len(fake.heartbeats)
            final = await wait_for_card(fake, 1, "Finished")
            events = cards_of(fake, 1)
            progress = [e for e in events if title(e).startswith("Drawing") and e.files]
            assert progress, [title(e) for e in events]
            assert "Iteration" in text_of(progress[-1])
            assert all(name.endswith(".png") for e in progress for name in e.files)
            assert final.files
            assert "150 iterations in" in text_of(final)
            assert "42" in text_of(final)
            assert custom_ids(final) == ["draw:reroll:1", "draw:continue:1", "draw:delete:1"]
            assert all(e.payload.get("allowed_mentions") == {"parse": []} for e in events)
            # The event loop kept answering the gateway while the worker drew.
            assert len(fake.heartbeats) - beats_before >= 2
            gaps = [b - a for a, b in zip(fake.heartbeats, fake.heartbeats[1:], strict=False)]
            assert max(gaps) < 1.5
            job = running.store.job(1)
            assert job is not None
            assert (job.status, job.steps) == ("done", 150)

    run(scenario())
