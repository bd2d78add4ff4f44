"""End-to-end: real discord.py over loopback to a fake Discord, tiny models.

The tests that need real drawing run the real worker: the pictures and progress of a drawing,
a worker killed mid-job, the `pseudo-dalle bot` command as a process, and the jobs a 0.2
database left waiting. The others (limits, refusals, cancelling, the queue's order, restarts of
the bot, cards, buttons) replace the workers' transport with the test's puppets
(`tests.fake_workers`), so nothing is drawn and each test says what the workers report.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import torch

from bot.jobs.store import ENDED, Store
from bot.limits import GuildLimits, bounds, describe
from generator.contract.jobs import ParentJob
from generator.contract.prompts import MAX_PROMPT_CHARS
from generator.contract.quality import QUALITIES
from generator.contract.reasons import COMPILING
from generator.method.latent import pack_state
from generator.models.loaders import decoder_from_file

from .bot_harness import (
    TOKEN,
    bot_with_puppets,
    cards_of,
    custom_ids,
    pseudo_dalle,
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
from .fake_discord import (
    ADMIN,
    ALICE,
    BOB,
    GUILD_ID,
    OTHER_CHANNEL_ID,
    Event,
    FakeDiscord,
)
from .fake_workers import FakeWorkers
from .test_bot_edits import FINISHED_BUTTONS

pytestmark = pytest.mark.e2e

LEGACY_DATABASE = Path(__file__).parent / "data" / "store-0.2-9828631.sql"
LEGACY_CHANNEL_ID = 222  # where the jobs of the 0.2 database were asked for


def sent_state(job_id: int) -> str:
    """The continue state `FakeWorkers.finish` sends for `job_id`."""
    return base64.b64encode(f"state of job {job_id}".encode()).decode("ascii")


@pytest.mark.slow
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
            assert custom_ids(final) == FINISHED_BUTTONS
            assert all(e.payload.get("allowed_mentions") == {"parse": []} for e in events)
            # The event loop kept answering the gateway while the worker drew.
            assert len(fake.heartbeats) - beats_before >= 2
            gaps = [b - a for a, b in zip(fake.heartbeats, fake.heartbeats[1:], strict=False)]
            assert max(gaps) < 1.5
            job = running.store.job(1)
            assert job is not None
            assert (job.status, job.steps) == ("done", 150)
            assert job.continue_state is not None
            assert len(job.continue_state) < 1000  # 64x64 pixels: an 8x8 grid of tokens

    run(scenario())


def test_jobs_interleave_fairly_and_the_per_user_cap_holds(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            first = await fake.command(ALICE, "draw", prompt="a cat", iterations=60, size=64)
            assert "job 1" in await fake.reply_to(first)
            await workers.next_job(1)
            for prompt in ("a dog", "a bird"):
                await fake.reply_to(await fake.command(ALICE, "draw", prompt=prompt, size=64))
            refused = await fake.reply_to(await fake.command(ALICE, "draw", prompt="a fox"))
            assert "You already have 2 drawing(s) waiting or running" in refused
            answer = await fake.reply_to(await fake.command(BOB, "draw", prompt="a car", size=64))
            assert "job 3" in answer
            queued = await wait_for_card(fake, 3, "Waiting", containing="Position")
            assert "Position 1 of 2" in text_of(queued)
            listing = await fake.reply_to(await fake.command(BOB, "queue"))
            assert listing.index("job 3 by") < listing.index("job 2 by")
            workers.finish(1, 60)
            assert (await workers.next_job(3)).spec.prompt == "a car"
            assert 2 not in workers.dispatched
            workers.finish(3, 20)
            assert (await workers.next_job(2)).spec.prompt == "a dog"
            workers.finish(2, 20)
            for job_id in (1, 2, 3):
                await wait_for_card(fake, job_id, "Finished")
            jobs = [running.store.job(i) for i in (1, 2, 3)]
            started = sorted(jobs, key=lambda j: j.started_at or 0)  # type: ignore[union-attr]
            # Alice asked first and twice, Bob once: Bob's job goes between Alice's two.
            assert [j.id for j in started] == [1, 3, 2]  # type: ignore[union-attr]

    run(scenario())


def test_admin_sets_limits_and_members_are_refused(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            _,
            _,
            workers,
        ):
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
            assert (await workers.next_job(1)).spec.iterations == 30
            workers.finish(1, 30)
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
            assert list(workers.dispatched) == [1]

    run(scenario())


def test_cancel_by_requester_works_and_by_others_is_refused(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a long one", iterations=2000, size=64)
            )
            await fake.reply_to(await fake.command(ALICE, "draw", prompt="waits", size=64))
            await workers.next_job(1)
            workers.progress(1, 1, 2000)
            await wait_for_card(fake, 1, "Drawing", containing="Iteration 1/2000")
            card = cards_of(fake, 1)[0].message_id
            assert card is not None
            refused = await fake.reply_to(await fake.click(BOB, card, "draw:cancel:1"))
            assert "Only the member who asked" in refused
            assert running.store.job(1).status == "running"  # type: ignore[union-attr]
            assert workers.cancelled == []
            queued = await fake.reply_to(await fake.command(ALICE, "cancel", job=2))
            assert "Cancelled job 2" in queued
            assert running.store.job(2).status == "cancelled"  # type: ignore[union-attr]
            stopping = await fake.reply_to(await fake.click(ALICE, card, "draw:cancel:1"))
            assert "Stopping job 1" in stopping
            await workers.was_cancelled(1)
            workers.finish(1, 7, cancelled=True)
            final = await wait_for_card(fake, 1, "Cancelled")
            assert final.files
            assert f"Cancelled by <@{ALICE.id}>" in text_of(final)
            job = running.store.job(1)
            assert job is not None
            assert (job.status, job.steps) == ("cancelled", 7)
            assert 2 not in workers.dispatched

    run(scenario())


def test_prompts_are_checked_and_never_ping(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            _,
            _,
            workers,
        ):
            empty = await fake.reply_to(await fake.command(ALICE, "draw", prompt="   "))
            assert "Prompt is empty" in empty
            long = await fake.reply_to(await fake.command(ALICE, "draw", prompt="word " * 90))
            assert "too long for CLIP" in long
            await fake.reply_to(
                await fake.command(
                    ALICE, "draw", prompt="@everyone look\x00", iterations=3, size=64
                )
            )
            assert (await workers.next_job(1)).spec.prompt == "@everyone look"
            workers.finish(1, 3)
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
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            config,
            before,
        ):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="first", iterations=300, size=64)
            )
            await fake.reply_to(await fake.command(BOB, "draw", prompt="second", size=64))
            await before.next_job(1)
            await wait_for_job(running.store, 1, lambda job: job.status == "running")
            await running.stop()
            stopped = await wait_for_card(fake, 1, "Waiting")
            assert "will start again when it is back" in text_of(stopped)

            since = len(fake.events)
            workers = FakeWorkers()
            restarted = await start_bot(config, fake, workers)
            try:
                notice = await wait_for_card(fake, 1, "Waiting", since=since)
                assert "will start again when it is back" in text_of(notice)
                workers.join(clip_models=(config.models.clip,))
                assert (await workers.next_job(1)).spec.iterations == 300
                workers.finish(1, 300)
                first = await wait_for_card(fake, 1, "Finished")
                assert "300 iterations in" in text_of(first)
                await workers.next_job(2)
                workers.finish(2, 20)
                await wait_for_card(fake, 2, "Finished")
                # Buttons keep working after the restart: their state is in the custom_id.
                card = cards_of(fake, 1)[-1].message_id
                assert card is not None
                rerolled = await fake.reply_to(await fake.click(BOB, card, "draw:reroll:1"))
                assert "Rerolling as job 3" in rerolled
                reroll = await workers.next_job(3)
                assert (reroll.spec.prompt, reroll.spec.parent) == (
                    "first",
                    ParentJob(id=1, how="reroll"),
                )
                assert reroll.init_state is None
                workers.finish(3, 300)
                await wait_for_card(fake, 3, "Finished")
                continued = await fake.reply_to(await fake.click(ALICE, card, "draw:continue:1"))
                assert "Continuing as job 4" in continued
                assert (await workers.next_job(4)).init_state == sent_state(1)
                workers.finish(4, 20)
                job = await wait_for_job(restarted.store, 4, lambda j: j.status == "done")
                parent = restarted.store.job(1)
                assert parent is not None
                assert (job.spec.parent, job.spec.seed) == (
                    ParentJob(id=1, how="continue"),
                    parent.spec.seed,
                )
                refused = await fake.reply_to(await fake.click(BOB, card, "draw:delete:1"))
                assert "Only the member who asked" in refused
                deleted = await fake.reply_to(await fake.click(ADMIN, card, "draw:delete:1"))
                assert "Deleted" in deleted
                assert card not in fake.messages
            finally:
                await restarted.stop()

    run(scenario())


@pytest.mark.slow
def test_worker_killed_mid_job_is_recovered(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, _):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="sturdy", iterations=100, size=64)
            )
            await wait_for_job(running.store, 1, lambda job: job.status == "running")
            pid = await running.worker_pid()
            since = len(fake.events)
            os.kill(pid, signal.SIGKILL)
            requeued = await wait_for_card(fake, 1, "Waiting", since=since)
            assert "worker stopped unexpectedly" in text_of(requeued)
            final = await wait_for_card(fake, 1, "Finished")
            assert "100 iterations in" in text_of(final)
            job = running.store.job(1)
            assert job is not None
            assert (job.status, job.requeues) == ("done", 1)

    run(scenario())


def test_card_older_than_50_minutes_is_replaced(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="patience", iterations=2000, size=64)
            )
            await workers.next_job(1)
            workers.progress(1, 1, 2000)
            await wait_for_card(fake, 1, "Drawing", containing="Iteration 1/2000")
            job = await wait_for_job(running.store, 1, lambda j: j.steps > 0)
            old_card = job.card_message_id
            assert old_card is not None
            running.store.card_posted(1, old_card, time.time() - 51 * 60)
            workers.progress(1, 2, 2000)
            fresh = await fake.wait_for(
                lambda: [
                    e for e in cards_of(fake, 1) if e.kind == "create" and e.message_id != old_card
                ]
            )
            assert title(fresh[-1]).startswith("Drawing")
            assert "Iteration 2/2000" in text_of(fresh[-1])
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
            await workers.was_cancelled(1)
            workers.finish(1, 2, cancelled=True)
            cancelled = await wait_for_card(fake, 1, "Cancelled")
            assert cancelled.message_id == fresh[-1].message_id

    run(scenario())


def test_queue_keeps_going_when_discord_refuses_cards(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            fake.refuse_messages = True
            asked = await fake.command(ALICE, "draw", prompt="unseen", iterations=30, size=64)
            assert "Queued as job 1" in await fake.reply_to(asked)
            await workers.next_job(1)
            workers.progress(1, 10, 30)
            workers.finish(1, 30)
            await wait_for_job(running.store, 1, lambda job: job.status == "done")
            assert cards_of(fake, 1) == []
            fake.refuse_messages = False
            await fake.reply_to(await fake.command(BOB, "draw", prompt="seen", size=64))
            await workers.next_job(2)
            workers.finish(2, 20)
            await wait_for_card(fake, 2, "Finished")

    run(scenario())


@pytest.mark.slow
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
                healthy = await asyncio.to_thread(pseudo_dalle, "healthcheck", "--file", str(beat))
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
            gone = await asyncio.to_thread(pseudo_dalle, "healthcheck", "--file", str(beat))
            assert gone.returncode == 1
            assert "no heartbeat file" in gone.stdout
        finally:
            await bot.kill()
            await fake.stop()

    run(scenario())


def test_jobs_share_the_worker_up_to_max_batch(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=2) as (
            fake,
            running,
            _,
            workers,
        ):
            store = running.store
            for who, prompt in ((ALICE, "a cat"), (BOB, "a car")):
                await fake.reply_to(
                    await fake.command(who, "draw", prompt=prompt, iterations=2000, size=64)
                )
            await fake.reply_to(
                await fake.command(ADMIN, "draw", prompt="a hat", iterations=30, size=64)
            )
            await workers.next_job(1)
            await workers.next_job(2)
            workers.progress(1, 1, 2000)
            workers.progress(2, 1, 2000)
            await wait_for_job(store, 2, lambda job: job.steps > 0)
            assert [j.id for j in store.jobs_with_status("running")] == [1, 2]
            assert [j.id for j in store.queue_order()] == [3]
            assert 3 not in workers.dispatched
            listing = await fake.reply_to(await fake.command(BOB, "queue"))
            assert "these 2 jobs share the worker (up to 2 at once)" in listing
            assert listing.index("job 1 by") < listing.index("job 2 by") < listing.index("job 3")
            await wait_for_card(fake, 2, "Drawing", containing="Sharing the worker with job 1")
            # Cancelling job 1 frees its place: job 3 starts and ends while job 2 still draws.
            await fake.reply_to(await fake.command(ALICE, "cancel", job=1))
            await workers.was_cancelled(1)
            workers.finish(1, 1, cancelled=True)
            assert (await workers.next_job(3)).spec.iterations == 30
            workers.finish(3, 30)
            third = await wait_for_job(store, 3, lambda job: job.status == "done")
            assert third.steps == 30
            second = store.job(2)
            assert second is not None
            assert second.status == "running"
            assert store.job(1).status == "cancelled"  # type: ignore[union-attr]
            await fake.reply_to(await fake.command(BOB, "cancel", job=2))
            await workers.was_cancelled(2)
            workers.finish(2, 2, cancelled=True)
            await wait_for_job(store, 2, lambda job: job.status == "cancelled")

    run(scenario())


def test_card_says_when_a_job_waits_for_compiling(model_files: ModelFiles, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a kiln", iterations=5, size=64)
            )
            await workers.next_job(1)
            workers.prepare(1, COMPILING.code)
            waiting = await wait_for_card(fake, 1, "Drawing", containing="Preparing: compiling")
            assert "compiling the networks for 64x64" in text_of(waiting)
            workers.finish(1, 5)
            final = await wait_for_card(fake, 1, "Finished")
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
        async with running_bot(tmp_path, model_files, transport=FakeWorkers()) as (
            fake,
            running,
            _,
        ):
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
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            await fake.reply_to(await fake.command(ALICE, "draw", prompt="a kite", size=64))
            await workers.next_job(1)
            workers.finish(1, 20)
            final = await wait_for_card(fake, 1, "Finished")
            job = running.store.job(1)
            assert job is not None
            assert job.continue_state == sent_state(1)
            assert running.store.forget_continue_states(ended_before=time.time() + 1) == 1
            card = final.message_id
            assert card is not None
            answer = await fake.reply_to(await fake.click(ALICE, card, "draw:continue:1"))
            assert answer == (
                "This drawing can no longer be continued: what it needs is kept 30 days. "
                "Reroll it instead."
            )
            assert running.store.job(2) is None
            assert list(workers.dispatched) == [1]

    run(scenario())


def legacy_cards(fake: FakeDiscord, job_id: int) -> list[Event]:
    """Creates and edits of job `job_id`'s card in the channel the 0.2 database's jobs came
    from."""
    marker = re.compile(rf"· job {job_id}$")
    return [
        e
        for e in fake.events
        if e.kind in ("create", "edit")
        and e.channel_id == LEGACY_CHANNEL_ID
        and any(marker.search(embed.get("title") or "") for embed in e.payload.get("embeds", []))
    ]


def a_continue_state(decoder: Path, side: int, seed: int = 0) -> str:
    """What a worker drawing with `decoder` leaves to continue a `side`x`side` drawing from, as
    the bot stores it (in the format 0.2's worker wrote too)."""
    _, shape = decoder_from_file(decoder, torch.device("cpu"))
    grid = side // 8  # the decoder draws 8x8 pixels a token
    logits = torch.randn(
        1, grid, grid, shape.vocab_size, generator=torch.Generator().manual_seed(seed)
    )
    return base64.b64encode(pack_state(logits)).decode("ascii")


def load_legacy(path: Path, decoder: Path) -> None:
    """The database 0.2 wrote, at `path`, with a real continue state for its done job 1 and
    job 9, which continues it: the file holds a stand-in that no worker can continue from."""
    state = a_continue_state(decoder, 64)
    with sqlite3.connect(path) as db:
        db.executescript(LEGACY_DATABASE.read_text())
        db.execute("UPDATE jobs SET continue_state = ? WHERE id = 1", (state,))
        db.execute("UPDATE jobs SET init_state = ? WHERE id = 9", (state,))


@pytest.mark.slow
def test_the_jobs_a_0_2_database_left_are_drawn_by_the_worker(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    """A bot upgraded from 0.2 draws what that version left: the job it was drawing (queued
    again at start) and the four waiting ones, among them one with a picture and one that
    continues a finished job from its state."""
    load_legacy(tmp_path / "bot.sqlite3", model_files.decoder_pickle)
    left = (5, 6, 7, 8, 9)

    async def scenario() -> None:
        async with running_bot(tmp_path, model_files) as (fake, running, config):
            store = running.store
            parent, continued = store.job(1), store.job(9)
            assert parent is not None
            assert continued is not None
            assert continued.spec.continues == 1
            assert continued.init_state == parent.continue_state
            for job_id in left:
                await wait_for_job(store, job_id, lambda j: j.status in ENDED, 120)
            ended = {job_id: store.job(job_id) for job_id in left}
            assert {i: (j.status, j.error) for i, j in ended.items() if j is not None} == {
                i: ("done", None) for i in left
            }
            # 4 iterations from job 1's state: a worker refuses a state it cannot continue.
            assert ended[9] is not None
            assert (ended[9].steps, ended[9].spec.seed, ended[9].init_state) == (4, 7, None)
            assert all(j.spec.clip_models[0] == config.models.clip for j in ended.values() if j)
            # Jobs 0.2 left are screened (the safe default, whatever the config says now); the
            # tiny CLIP's random scores decide which pictures are withheld, and a withheld
            # job's card holds no picture.
            assert all(j.spec.screening.pictures for j in ended.values() if j)
            for job_id in left:
                finished = await fake.wait_for(
                    lambda job_id=job_id: [
                        e for e in legacy_cards(fake, job_id) if title(e).startswith("Finished")
                    ]
                )
                assert bool(finished[-1].files) is not ended[job_id].withheld  # type: ignore[union-attr]
            assert cards_of(fake, 9) == []

    run(scenario())
