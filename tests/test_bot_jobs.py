"""The bot's jobs through the seam below it: the real bot (the launcher's own wiring, real
discord.py over loopback to the fake Discord, real SQLite) with the workers' transport replaced
by the test's puppets, so each test decides what the workers hold and say, and nothing is drawn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config
from bot.ops.health import check_heartbeat
from generator.contract.jobs import JobSpec
from generator.contract.reasons import (
    COMPILING,
    MISSING_MODEL,
    OUT_OF_MEMORY,
    PROMPT_TOO_LONG_FOR_CLIP,
    WAITING_FOR_MEMORY,
)

from .bot_harness import (
    bot_with_puppets,
    run,
    start_bot,
    text_of,
    wait_for_card,
    wait_for_job,
    write_config,
)
from .conftest import ModelFiles
from .fake_discord import ADMIN, ALICE, BOB, CHANNEL_ID, YUKI, FakeDiscord
from .fake_workers import FakeWorkers

pytestmark = pytest.mark.e2e


def test_a_waiting_job_is_drawn_as_it_was_asked_for_whatever_the_admin_changes_meanwhile(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files) as (fake, bot, config, workers):
            main = config.models.clip
            asked: dict[str, Any] = {"prompt": "a lighthouse", "seed": 5}
            assert "Queued as job 1" in await fake.reply_to(
                await fake.command(ALICE, "draw", **asked)
            )
            before = bot.store.job(1)
            assert before is not None
            changed = await fake.reply_to(
                await fake.command(
                    ADMIN,
                    "drawconfig",
                    max_iterations=40,
                    default_iterations=30,
                    max_queued_per_user=3,
                    progress_interval=60.0,
                    max_size=256,
                    auto_stop=5,
                    max_quality="draft",
                    timelapse=True,
                    image_inputs=False,
                    allow_channel=str(CHANNEL_ID),
                )
            )
            assert "Drawing settings updated" in changed
            assert "Queued as job 2" in await fake.reply_to(
                await fake.command(BOB, "draw", **asked)
            )
            workers.join(places=2, clip_models=(main,))
            first, second = await workers.next_job(1), await workers.next_job(2)
            # Job 1 is drawn exactly as it was asked for, with the server's settings of then.
            assert (
                first.spec
                == before.spec
                == JobSpec(
                    prompt="a lighthouse",
                    seed=5,
                    iterations=20,
                    width=512,
                    height=512,
                    quality="normal",
                    cutouts=4,
                    clip_models=(main,),
                    progress_every_s=2.0,
                )
            )
            # Job 2, asked for the same way after the change, gets the new settings.
            assert second.spec == first.spec.model_copy(
                update={
                    "iterations": 30,
                    "width": 256,
                    "height": 256,
                    "quality": "draft",
                    "auto_stop": 5,
                    "timelapse": True,
                    "progress_every_s": 60.0,
                }
            )

    run(scenario())


def test_a_member_whose_waiting_drawing_is_refused_keeps_their_turn(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files) as (fake, bot, config, workers):
            main = config.models.clip
            workers.join(clip_models=(main,))
            # Alice was served first, Bob after her.
            for member, job in ((ALICE, 1), (BOB, 2)):
                await fake.reply_to(await fake.command(member, "draw", prompt="a warm-up"))
                await workers.next_job(job)
                workers.finish(job, 20)
                await wait_for_card(fake, job, "Finished")
            workers.leave()
            # With no worker ready, nobody can say yet which models are there: all three wait.
            for member, quality in ((ALICE, "better"), (BOB, None), (ALICE, None)):
                options: dict[str, Any] = {"quality": quality} if quality else {}
                await fake.reply_to(await fake.command(member, "draw", prompt="a fox", **options))
            workers.join(clip_models=(main,))  # it lacks the second model `better` needs
            refused = await wait_for_card(fake, 3, "Could not draw this")
            assert "no drawing worker holds" in text_of(refused)
            failed = await wait_for_job(bot.store, 3, lambda j: j.status == "failed")
            assert failed.started_at is None
            # Alice's refused drawing took no turn: she was served longer ago than Bob.
            assert (await workers.next_job(5)).spec.prompt == "a fox"
            assert 4 not in workers.dispatched

    run(scenario())


def test_what_the_workers_report_reaches_the_card_in_the_members_words(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, guild_locale="ja") as (
            fake,
            _,
            config,
            workers,
        ):
            workers.join(places=4, clip_models=(config.models.clip,))
            # Yuki's Discord is in Japanese, the others' in English.
            for job, member in ((1, YUKI), (2, BOB), (3, ADMIN), (4, ALICE)):
                await fake.reply_to(await fake.command(member, "draw", prompt=f"a boat {job}"))
                await workers.next_job(job)
            workers.prepare(1, COMPILING.code)
            compiling = await wait_for_card(fake, 1, "描画中", containing="コンパイル")
            assert "512x512 用に" in text_of(compiling)
            workers.prepare(2, WAITING_FOR_MEMORY.code)
            await wait_for_card(fake, 2, "描画中", containing="準備中: この絵のためのメモリが空く")
            workers.fail(1, OUT_OF_MEMORY.code)
            workers.fail(2, MISSING_MODEL.code, {"model": "ViT-B/16"})
            workers.fail(3, PROMPT_TOO_LONG_FOR_CLIP.code, {"part": "a boat 3", "most": 75})
            workers.fail(4, OUT_OF_MEMORY.code)
            failed = [await wait_for_card(fake, job, "描けませんでした") for job in (1, 2, 3, 4)]
            assert "メモリ" in text_of(failed[0])
            assert "ViT-B/16" in text_of(failed[1])
            assert "75" in text_of(failed[2])
            # The server's language for all; the requester's too where it differs, so that an
            # English member of a Japanese server reads what to change.
            assert "the GPU" not in text_of(failed[0])
            assert "メモリ" in text_of(failed[3])
            assert "the GPU ran out of memory" in text_of(failed[3])

    run(scenario())


async def healthy_within(
    beat: Path, seconds: float, change: Callable[[], object], *, expect: str | None
) -> None:
    """After `change`, the heartbeat file says `expect` (None: healthy) within `seconds`."""
    change()
    began = time.monotonic()
    while True:
        problem = check_heartbeat(beat, 90)
        if (problem is None) if expect is None else (problem is not None and expect in problem):
            return
        assert time.monotonic() - began < seconds, problem
        await asyncio.sleep(0.05)


def test_healthcheck_follows_the_gateway_and_the_workers_within_two_seconds(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        fake = FakeDiscord()
        await fake.start()
        beat = tmp_path / "heartbeat.json"
        # The timer alone would write every 15 s: what follows comes from the events.
        health = f'heartbeat_file = "{beat}"\ninterval_s = 15.0'
        config = load_config(write_config(tmp_path, fake, model_files, health=health), {})
        workers = FakeWorkers()
        workers.join(clip_models=(config.models.clip,))
        starting = asyncio.create_task(start_bot(config, fake, workers))
        await asyncio.wait_for(fake.identified.wait(), 30)
        ready = time.monotonic()
        bot = await starting
        try:
            while (problem := check_heartbeat(beat, 90)) is not None:
                assert time.monotonic() - ready < 2, problem
                await asyncio.sleep(0.05)
            await fake.go_offline()
            dropped = time.monotonic()
            while check_heartbeat(beat, 90) is None:
                assert time.monotonic() - dropped < 2, "still healthy with the gateway gone"
                await asyncio.sleep(0.05)
            assert "lost its connection" in (check_heartbeat(beat, 90) or "")
            await fake.go_online()
            back = time.monotonic()
            while check_heartbeat(beat, 90) is not None:
                # discord.py waits a moment before it reconnects: that wait is not the bot's.
                assert time.monotonic() - back < 15
                await asyncio.sleep(0.05)
            await healthy_within(beat, 2, workers.leave, expect="no drawing worker")
            await healthy_within(
                beat, 2, lambda: workers.join(clip_models=(config.models.clip,)), expect=None
            )
        finally:
            await bot.stop()
            await fake.stop()

    run(scenario())
