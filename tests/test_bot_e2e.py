"""End-to-end: real discord.py over loopback to a fake Discord, real worker, tiny models."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.limits import GuildLimits, bounds, describe
from bot.jobs.store import Store
from generator.contract.prompts import MAX_PROMPT_CHARS
from generator.contract.quality import QUALITIES

from .bot_harness import (
    TOKEN,
    WORKER,
    cards_of,
    custom_ids,
    run,
    running_bot,
    start_bot,
    start_bot_process,
    text_of,
    title,
    wait_for_card,
    wait_for_job,
    write_config,
)
from .conftest import ModelFiles
from .fake_discord import ADMIN, ALICE, BOB, GUILD_ID, OTHER_CHANNEL_ID, FakeDiscord

pytestmark = pytest.mark.e2e


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


def test_jobs_interleave_fairly_and_the_per_user_cap_holds(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            first = await fake.command(ALICE, "draw", prompt="a cat", iterations=60, size=64)
            assert "job 1" in await fake.reply_to(first)
            for prompt in ("a dog", "a bird"):
                await fake.reply_to(await fake.command(ALICE, "draw", prompt=prompt, size=64))
            refused = await fake.reply_to(await fake.command(ALICE, "draw", prompt="a fox"))
            assert "You already have 2 drawing(s) waiting or running" in refused
            answer = await fake.reply_to(await fake.command(BOB, "draw", prompt="a car", size=64))
            assert "job 3" in answer
            queued = await wait_for_card(fake, 3, "Waiting")
            assert "Position" in text_of(queued)
            listing = await fake.reply_to(await fake.command(BOB, "queue"))
            assert listing.index("job 3 by") < listing.index("job 2 by")
            for job_id in (1, 2, 3):
                await wait_for_card(fake, job_id, "Finished")
            jobs = [running.store.job(i) for i in (1, 2, 3)]
            started = sorted(jobs, key=lambda j: j.started_at or 0)  # type: ignore[union-attr]
            # Alice asked first and twice, Bob once: Bob's job goes between Alice's two.
            assert [j.id for j in started] == [1, 3, 2]  # type: ignore[union-attr]

    run(scenario())


def test_admin_sets_limits_and_members_are_refused(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, _, _):
            refused = await fake.reply_to(await fake.command(BOB, "drawconfig", max_iterations=10))
            assert "Manage Server" in refused
            changed = await fake.reply_to(
                await fake.command(ADMIN, "drawconfig", max_iterations=30, max_size=100000)
            )
            assert "at most 30" in changed
            assert "max_size lowered from 100000 to the bot's limit, 512" in changed
            clamped = await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a boat", iterations=100, size=64)
            )
            assert "Iterations lowered from 100 to this server's maximum, 30." in clamped
            final = await wait_for_card(fake, 1, "Finished")
            assert "30 iterations in" in text_of(final)
            shown = await fake.reply_to(await fake.command(BOB, "help"))
            assert "at most 30" in shown
            allowed = await fake.reply_to(
                await fake.command(ADMIN, "drawconfig", allow_channel=str(OTHER_CHANNEL_ID))
            )
            assert f"Where: <#{OTHER_CHANNEL_ID}>" in allowed
            elsewhere = await fake.reply_to(await fake.command(ALICE, "draw", prompt="a hill"))
            assert f"Drawing is not enabled in this channel. Try <#{OTHER_CHANNEL_ID}>" in elsewhere
            everywhere = await fake.reply_to(
                await fake.command(ADMIN, "drawconfig", all_channels=True)
            )
            assert "Where: any channel" in everywhere

    run(scenario())


def test_cancel_by_requester_works_and_by_others_is_refused(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a long one", iterations=2000, size=64)
            )
            await fake.reply_to(await fake.command(ALICE, "draw", prompt="waits", size=64))
            await wait_for_job(running.store, 1, lambda job: job.steps > 0)
            card = cards_of(fake, 1)[0].message_id
            assert card is not None
            refused = await fake.reply_to(await fake.click(BOB, card, "draw:cancel:1"))
            assert "Only the member who asked" in refused
            assert running.store.job(1).status == "running"  # type: ignore[union-attr]
            queued = await fake.reply_to(await fake.command(ALICE, "cancel", job=2))
            assert "Cancelled job 2" in queued
            stopping = await fake.reply_to(await fake.click(ALICE, card, "draw:cancel:1"))
            assert "Stopping job 1" in stopping
            final = await wait_for_card(fake, 1, "Cancelled")
            assert final.files
            assert f"Cancelled by <@{ALICE.id}>" in text_of(final)
            job = running.store.job(1)
            assert job is not None
            assert job.status == "cancelled"
            assert 0 < job.steps < 2000

    run(scenario())


def test_prompts_are_checked_and_never_ping(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, _, _):
            empty = await fake.reply_to(await fake.command(ALICE, "draw", prompt="   "))
            assert "Prompt is empty" in empty
            long = await fake.reply_to(await fake.command(ALICE, "draw", prompt="word " * 90))
            assert "too long for CLIP" in long
            await fake.reply_to(
                await fake.command(
                    ALICE, "draw", prompt="@everyone look\x00", iterations=3, size=64
                )
            )
            final = await wait_for_card(fake, 1, "Finished")
            assert "@everyone look" in text_of(final)
            assert "\x00" not in text_of(final)
            assert all(
                e.payload.get("allowed_mentions") == {"parse": []} for e in cards_of(fake, 1)
            )

    run(scenario())


def test_restart_requeues_the_running_job_and_finishes_the_queue(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, config):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="first", iterations=300, size=64)
            )
            await fake.reply_to(await fake.command(BOB, "draw", prompt="second", size=64))
            # Stop as soon as job 1 runs: its first progress report may come only at its end.
            await wait_for_job(running.store, 1, lambda job: job.status == "running")
            await running.stop()
            stopped = await wait_for_card(fake, 1, "Waiting")
            assert "will start again when it is back" in text_of(stopped)

            since = len(fake.events)
            restarted = await start_bot(config, fake)
            try:
                notice = await wait_for_card(fake, 1, "Waiting", since=since)
                assert "will start again when it is back" in text_of(notice)
                first = await wait_for_card(fake, 1, "Finished")
                await wait_for_card(fake, 2, "Finished")
                assert "300 iterations in" in text_of(first)
                # Buttons keep working after the restart: their state is in the custom_id.
                card = cards_of(fake, 1)[-1].message_id
                assert card is not None
                rerolled = await fake.reply_to(await fake.click(BOB, card, "draw:reroll:1"))
                assert "Rerolling as job 3" in rerolled
                await wait_for_card(fake, 3, "Finished")
                continued = await fake.reply_to(await fake.click(ALICE, card, "draw:continue:1"))
                assert "Continuing as job 4" in continued
                job = await wait_for_job(restarted.store, 4, lambda j: j.status == "done")
                assert (job.parent_id, job.seed) == (1, restarted.store.job(1).seed)  # type: ignore[union-attr]
                refused = await fake.reply_to(await fake.click(BOB, card, "draw:delete:1"))
                assert "Only the member who asked" in refused
                deleted = await fake.reply_to(await fake.click(ADMIN, card, "draw:delete:1"))
                assert "Deleted" in deleted
                assert card not in fake.messages
            finally:
                await restarted.stop()

    run(scenario())


def test_worker_killed_mid_job_is_recovered(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="sturdy", iterations=300, size=64)
            )
            await wait_for_job(running.store, 1, lambda job: job.status == "running")
            pid = await running.worker_pid()
            since = len(fake.events)
            os.kill(pid, signal.SIGKILL)
            requeued = await wait_for_card(fake, 1, "Waiting", since=since)
            assert "worker stopped unexpectedly" in text_of(requeued)
            final = await wait_for_card(fake, 1, "Finished")
            assert "300 iterations in" in text_of(final)
            job = running.store.job(1)
            assert job is not None
            assert (job.status, job.requeues) == ("done", 1)

    run(scenario())


def test_card_older_than_50_minutes_is_replaced(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="patience", iterations=2000, size=64)
            )
            job = await wait_for_job(running.store, 1, lambda j: j.steps > 0)
            old_card = job.card_message_id
            running.store.card_posted(1, old_card or 0, time.time() - 51 * 60)
            fresh = await fake.wait_for(
                lambda: [
                    e for e in cards_of(fake, 1) if e.kind == "create" and e.message_id != old_card
                ]
            )
            assert title(fresh[-1]).startswith("Drawing")
            await fake.wait_for(
                lambda: [
                    e
                    for e in fake.events
                    if e.kind == "edit"
                    and e.message_id == old_card
                    and "continues in a newer message below" in (e.payload.get("content") or "")
                ]
            )
            await fake.reply_to(await fake.command(ALICE, "cancel"))
            await wait_for_card(fake, 1, "Cancelled")

    run(scenario())


def test_queue_keeps_going_when_discord_refuses_cards(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            fake.refuse_messages = True
            asked = await fake.command(ALICE, "draw", prompt="unseen", iterations=30, size=64)
            assert "Queued as job 1" in await fake.reply_to(asked)
            await wait_for_job(running.store, 1, lambda job: job.status == "done")
            assert cards_of(fake, 1) == []
            fake.refuse_messages = False
            await fake.reply_to(await fake.command(BOB, "draw", prompt="seen", size=64))
            await wait_for_card(fake, 2, "Finished")

    run(scenario())


def test_bot_process_reports_health_and_stops_cleanly_on_sigterm(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        fake = FakeDiscord()
        await fake.start()
        health = 'heartbeat_file = "heartbeat.json"\ninterval_s = 1'
        bot = await start_bot_process(write_config(tmp_path, fake, model_files, health=health))
        try:
            await asyncio.wait_for(fake.identified.wait(), 60)
            await fake.wait_for(lambda: fake.commands)
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="patience", iterations=3000, size=64)
            )
            await wait_for_card(fake, 1, "Drawing")
            beat = tmp_path / "heartbeat.json"
            # discord.py calls itself ready 2 s after the last guild arrives; allow for that.
            for _ in range(20):
                healthy = await asyncio.to_thread(_cli, "healthcheck", "--file", str(beat))
                if healthy.returncode == 0:
                    break
                await asyncio.sleep(0.5)
            assert (healthy.returncode, healthy.stdout.strip()) == (0, "healthy")

            asked_to_stop = time.monotonic()
            bot.process.send_signal(signal.SIGTERM)
            code = await bot.exited(timeout=10)
            assert time.monotonic() - asked_to_stop < 10
            assert code == 0, "".join(bot.log)
            assert TOKEN not in "".join(bot.log)
            resumed = await wait_for_card(fake, 1, "Waiting")
            assert "will start again when it is back" in text_of(resumed)
            store = Store(tmp_path / "bot.sqlite3", GuildLimits())
            assert store.job(1).status == "queued"  # type: ignore[union-attr]
            store.close()
            gone = await asyncio.to_thread(_cli, "healthcheck", "--file", str(beat))
            assert gone.returncode == 1
            assert "no heartbeat file" in gone.stdout
        finally:
            await bot.kill()
            await fake.stop()

    run(scenario())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from pseudo_dalle.cli import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_jobs_share_the_worker_up_to_max_batch(model_files: ModelFiles, tmp_path: Path) -> None:
    worker = f"{WORKER}\nmax_batch = 2"
    # Jobs 1 and 2 run until cancelled, so nothing below depends on how fast this machine draws.
    long = "max_iterations = 100000\nmax_queued_per_user = 2\nprogress_interval_s = 2"
    limits = "max_iterations = 100000"

    async def scenario() -> None:
        async with running_bot(
            tmp_path, model_files, worker=worker, defaults=long, limits=limits
        ) as (fake, running, _):
            store = running.store
            for who, prompt in ((ALICE, "a cat"), (BOB, "a car")):
                await fake.reply_to(
                    await fake.command(who, "draw", prompt=prompt, iterations=100000, size=64)
                )
            await fake.reply_to(
                await fake.command(ADMIN, "draw", prompt="a hat", iterations=30, size=64)
            )
            await wait_for_job(store, 2, lambda job: job.steps > 0)
            assert [j.id for j in store.jobs_with_status("running")] == [1, 2]
            assert [j.id for j in store.queue_order()] == [3]
            listing = await fake.reply_to(await fake.command(BOB, "queue"))
            assert "these 2 jobs share the worker (up to 2 at once)" in listing
            assert listing.index("job 1 by") < listing.index("job 2 by") < listing.index("job 3")
            sharing = await fake.wait_for(
                lambda: any(
                    "Sharing the worker with job 1" in text_of(e) for e in cards_of(fake, 2)
                )
            )
            assert sharing
            # Cancelling job 1 frees its place: job 3 starts and ends while job 2 still draws.
            await fake.reply_to(await fake.command(ALICE, "cancel", job=1))
            third = await wait_for_job(store, 3, lambda job: job.status == "done")
            assert third.steps == 30
            second = store.job(2)
            assert second is not None
            assert second.status == "running"
            assert store.job(1).status == "cancelled"  # type: ignore[union-attr]
            await fake.reply_to(await fake.command(BOB, "cancel", job=2))
            await wait_for_job(store, 2, lambda job: job.status == "cancelled")

    run(scenario())


def test_card_says_when_a_job_waits_for_compiling(model_files: ModelFiles, tmp_path: Path) -> None:
    worker = f"{WORKER}\ncompile = true"

    async def scenario() -> None:
        async with running_bot(tmp_path, model_files, worker=worker) as (fake, running, _):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a kiln", iterations=5, size=64)
            )
            waiting = await fake.wait_for(
                lambda: [e for e in cards_of(fake, 1) if "Preparing: compiling" in text_of(e)],
                timeout=120,
            )
            assert "compiling the networks for 64x64" in text_of(waiting[-1])
            final = await wait_for_card(fake, 1, "Finished", timeout=300)
            assert "5 iterations in" in text_of(final)
            job = running.store.job(1)
            assert job is not None
            assert (job.status, job.steps) == ("done", 5)

    run(scenario())


def test_command_options_come_from_the_limit_declarations(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    """What the bot registers with Discord: /drawconfig's options are the guild limits with
    their declared ranges and help, /draw's ranges are the same declarations; a value outside
    them (Discord's client enforces the ranges, a hand-made request need not) changes nothing."""

    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            commands = {c["name"]: c for c in fake.commands}
            options = {o["name"]: o for o in commands["drawconfig"]["options"]}
            for name in GuildLimits.model_fields:
                option = options["progress_interval" if name == "progress_interval_s" else name]
                assert option["description"] == describe(GuildLimits, name)
                if name == "max_quality":  # a choice, not a range
                    assert [c["value"] for c in option["choices"]] == list(QUALITIES)
                    continue
                assert (option["min_value"], option["max_value"]) == bounds(GuildLimits, name)
            draw = {o["name"]: o for o in commands["draw"]["options"]}
            assert (draw["iterations"]["min_value"], draw["iterations"]["max_value"]) == bounds(
                GuildLimits, "max_iterations"
            )
            assert (draw["size"]["min_value"], draw["size"]["max_value"]) == bounds(
                GuildLimits, "max_size"
            )
            assert draw["prompt"]["max_length"] == MAX_PROMPT_CHARS
            before = running.store.guild_settings(GUILD_ID)
            refused = await fake.reply_to(
                await fake.command(ADMIN, "drawconfig", max_iterations=5, max_size=16)
            )
            assert refused == "Nothing changed: max_size must be from 64 to 1024."
            assert running.store.guild_settings(GUILD_ID) == before

    run(scenario())


def test_continue_after_the_retention_period_says_so(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            await fake.reply_to(await fake.command(ALICE, "draw", prompt="a kite", size=64))
            final = await wait_for_card(fake, 1, "Finished")
            job = running.store.job(1)
            assert job is not None
            assert job.continue_state is not None
            assert len(job.continue_state) < 1000  # 64x64 pixels: an 8x8 grid of tokens
            running.store.forget_continue_states(ended_before=time.time() + 1)
            card = final.message_id
            assert card is not None
            answer = await fake.reply_to(await fake.click(ALICE, card, "draw:continue:1"))
            assert answer == (
                "This drawing can no longer be continued: what it needs is kept 30 days. "
                "Reroll it instead."
            )
            assert running.store.job(2) is None

    run(scenario())
