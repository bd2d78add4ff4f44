"""Where pictures may go, in the real bot over the fake Discord: a picture whose screening
crosses a concept is never posted to a channel that is not age-restricted (nor to a thread of
one), is posted in an age-restricted one (as a spoiler where the server says so), and one that
could not be screened is withheld; the moderation log hears of withheld pictures, refused
prompts and reports; barred members cannot draw. The workers are the test's puppets, which
report the scores a worker's screening would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.front import cards
from bot.i18n import tr
from bot.jobs import scheduler
from generator.contract.protocol import MeaningChecked
from generator.contract.reasons import PROMPT_MEANING
from generator.contract.screening import BUILTIN_CONCEPTS, Concept
from generator.media.animation import suffix_of

from .bot_harness import (
    UNSCREENED,
    bot_with_puppets,
    cards_of,
    custom_ids,
    run,
    running_bot,
    wait_for_card,
)
from .conftest import ModelFiles
from .fake_discord import (
    ADMIN,
    AGE_RESTRICTED_ID,
    AGE_RESTRICTED_THREAD_ID,
    ALICE,
    BOB,
    CHANNEL_ID,
    LOG_CHANNEL_ID,
    THREAD_ID,
    YUKI,
    Event,
    FakeDiscord,
    Member,
    message_text,
)
from .fake_workers import FakeWorkers, png
from .pictures import encoded, noise
from .redis_harness import RedisServer, WorkerProcess
from .test_bot_images_redis import until

pytestmark = pytest.mark.e2e

WITHHELD = "The picture was withheld: the screening found it may not be suitable for this channel."
JAPANESE_THANKS = "ありがとうございます。ジョブ 1 をこのサーバーのモデレーターに報告しました。"
RED = png(colour=(200, 30, 30))  # what a crossing picture looks like, to find it if it leaks


async def draw(
    fake: FakeDiscord, prompt: str, channel_id: int = CHANNEL_ID, member: Member = ALICE
) -> str:
    return await fake.reply_to(
        await fake.command(member, "draw", channel_id=channel_id, prompt=prompt)
    )


async def moderate(fake: FakeDiscord, subcommand: str, by: Member = ADMIN, **options: Any) -> str:
    """What `/moderation SUBCOMMAND` answers `by`; `subcommand` may name a group's, e.g.
    "concept add"."""
    asked = await fake.command(by, "moderation", subcommand=subcommand, **options)
    return await fake.reply_to(asked)


def files_of(fake: FakeDiscord, job_id: int, channel_id: int) -> list[str]:
    """Every file name any create or edit of the job's card carried."""
    return [name for event in cards_of(fake, job_id, 0, channel_id) for name in event.files]


def log_entries(fake: FakeDiscord) -> list[Event]:
    return [e for e in fake.events if e.kind == "create" and e.channel_id == LOG_CHANNEL_ID]


async def wait_for_log(fake: FakeDiscord, containing: str) -> Event:
    def found() -> Event | None:
        return next((e for e in log_entries(fake) if containing in message_text(e)), None)

    return await fake.wait_for(found, 30)  # type: ignore[no-any-return]


async def crossing_job(
    fake: FakeDiscord, workers: FakeWorkers, job_id: int, channel_id: int
) -> None:
    """Job `job_id` drawn with every picture crossing: previews, final and time-lapse."""
    await workers.next_job(job_id)
    crossing = workers.scores(job_id, crossing=1.0)
    workers.progress(job_id, 5, 20, screening=crossing, picture=RED)
    await wait_for_card(fake, job_id, "Drawing", containing="25%", channel_id=channel_id)
    workers.progress(job_id, 10, 20, picture=RED)  # clean, but the job is withheld by now
    await wait_for_card(fake, job_id, "Drawing", containing="50%", channel_id=channel_id)
    workers.finish(
        job_id, 20, screening=crossing, timelapse=RED, timelapse_screening=crossing, picture=RED
    )
    await wait_for_card(fake, job_id, "Finished", channel_id=channel_id)


def test_a_picture_that_crosses_is_never_posted_outside_age_restricted_channels(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            plain = await draw(fake, "a lighthouse", CHANNEL_ID)
            assert "Queued as job 1" in plain
            await crossing_job(fake, workers, 1, CHANNEL_ID)
            assert files_of(fake, 1, CHANNEL_ID) == []  # previews included: nothing, ever
            final = await wait_for_card(fake, 1, "Finished")
            assert WITHHELD in message_text(final)
            assert "It can be drawn in an age-restricted channel." in message_text(final)
            assert "image" not in final.payload["embeds"][0]
            assert "draw:report:1" in custom_ids(final)
            assert running.store.job(1).withheld  # type: ignore[union-attr]

            # A thread goes by its parent: a plain channel's thread withholds too.
            assert "Queued as job 2" in await draw(fake, "a lighthouse", THREAD_ID)
            await crossing_job(fake, workers, 2, THREAD_ID)
            assert files_of(fake, 2, THREAD_ID) == []

            # An age-restricted channel, and its thread, show the same pictures.
            for job, channel in ((3, AGE_RESTRICTED_ID), (4, AGE_RESTRICTED_THREAD_ID)):
                assert f"Queued as job {job}" in await draw(fake, "a lighthouse", channel)
                await crossing_job(fake, workers, job, channel)
                shown = await wait_for_card(fake, job, "Finished", channel_id=channel)
                assert set(shown.files) == {
                    f"pseudo-dalle-{job}.png",
                    f"pseudo-dalle-{job}-timelapse{suffix_of(RED)}",
                }
                assert shown.files[f"pseudo-dalle-{job}.png"] == RED
                assert WITHHELD not in message_text(shown)
                assert not running.store.job(job).withheld  # type: ignore[union-attr]

            # ...as spoilers, once the server says so: files of their own, no embed image.
            said = await moderate(fake, "spoiler_in_age_restricted", on=True)
            assert said == (
                "In age-restricted channels, pictures the screening flags are shown as spoilers."
            )
            assert "Queued as job 5" in await draw(fake, "a lighthouse", AGE_RESTRICTED_ID)
            await crossing_job(fake, workers, 5, AGE_RESTRICTED_ID)
            spoiled = await wait_for_card(fake, 5, "Finished", channel_id=AGE_RESTRICTED_ID)
            assert set(spoiled.files) == {
                "SPOILER_pseudo-dalle-5.png",
                f"SPOILER_pseudo-dalle-5-timelapse{suffix_of(RED)}",
            }
            assert "image" not in spoiled.payload["embeds"][0]

            # The card speaks the server's language, and the requester's too where it differs.
            assert "ジョブ 6" in await draw(fake, "a lighthouse", member=YUKI)
            await crossing_job(fake, workers, 6, CHANNEL_ID)
            text = message_text(await wait_for_card(fake, 6, "Finished"))
            assert tr("en", cards.WITHHELD) in text
            japanese = tr("ja", cards.WITHHELD)
            assert japanese != tr("en", cards.WITHHELD)
            assert japanese in text
            assert japanese not in message_text(final)  # Alice's card: English only

    run(scenario())


def test_screening_that_failed_withholds_and_a_crossing_time_lapse_is_dropped(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            assert "Queued as job 1" in await draw(fake, "a harbour")
            await workers.next_job(1)
            workers.progress(1, 5, 20)
            first = await wait_for_card(fake, 1, "Drawing", containing="25%")
            assert list(first.files) == ["pseudo-dalle-1.png"]  # clean: shown
            workers.progress(1, 10, 20, screening=None)  # the worker could not screen it
            unscreened = await wait_for_card(fake, 1, "Drawing", containing="50%")
            assert unscreened.files == {}
            assert WITHHELD in message_text(unscreened)
            workers.finish(1, 20)  # clean, but the job was withheld: stays so
            final = await wait_for_card(fake, 1, "Finished")
            assert final.files == {}

            # Scores for other concepts than the job's count as not screened.
            assert "Queued as job 2" in await draw(fake, "a harbour", member=BOB)
            await workers.next_job(2)
            workers.finish(2, 20, screening=workers.scores(1).model_copy(update={"concepts": ()}))
            assert (await wait_for_card(fake, 2, "Finished")).files == {}

            # Only the time-lapse crosses: it is left out, the picture is posted.
            assert "Queued as job 3" in await draw(fake, "a harbour")
            await workers.next_job(3)
            crossing = workers.scores(3, crossing=0.0, learned=0.9)  # Q16 says inappropriate
            workers.finish(3, 20, timelapse=RED, timelapse_screening=crossing)
            shown = await wait_for_card(fake, 3, "Finished")
            assert list(shown.files) == ["pseudo-dalle-3.png"]
            assert "The time-lapse was withheld" in message_text(shown)
            assert not running.store.job(3).withheld  # type: ignore[union-attr]

    run(scenario())


def test_the_log_channel_hears_of_withheld_pictures_refused_prompts_and_reports(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(
            tmp_path, model_files, joined_places=1, moderation='blocked_terms = ["gore*"]'
        ) as (fake, running, _, workers):
            assert "Queued as job 1" in await draw(fake, "a quiet street")
            await workers.next_job(1)
            workers.finish(1, 20)
            card = await wait_for_card(fake, 1, "Finished")
            assert card.message_id is not None
            # Without a log channel, the reporter is told to tell a moderator too.
            pressed = await fake.click(BOB, card.message_id, "draw:report:1")
            assert "no moderation log channel" in await fake.reply_to(pressed)

            said = await moderate(fake, "log_channel", channel=str(LOG_CHANNEL_ID))
            assert said == f"The moderation log goes to <#{LOG_CHANNEL_ID}> from now on."
            pressed = await fake.click(YUKI, card.message_id, "draw:report:1")
            assert await fake.reply_to(pressed) == JAPANESE_THANKS
            report = await wait_for_log(fake, "Report · job 1")
            text = message_text(report)
            assert "a quiet street" in text
            assert f"<@{ALICE.id}>" in text
            assert f"<@{YUKI.id}>" in text
            assert report.files == {}  # the log channel is not age-restricted
            again = await fake.reply_to(await fake.click(BOB, card.message_id, "draw:report:1"))
            assert again == "You have reported job 1 already. Thank you."

            assert "gorey" in await draw(fake, "a gorey scene", member=BOB)
            refusal = message_text(await wait_for_log(fake, "Prompt refused"))
            assert "a gorey scene" in refusal
            assert "the bot's operator's terms" in refusal

            assert "Queued as job 2" in await draw(fake, "a dark alley")
            await workers.next_job(2)
            workers.finish(2, 20, screening=workers.scores(2, crossing=1.0), picture=RED)
            withheld = await wait_for_log(fake, "Picture withheld · job 2")
            assert "the final picture" in message_text(withheld)
            assert BUILTIN_CONCEPTS[0].text in message_text(withheld)
            assert withheld.files == {}

            # A log channel that is age-restricted sees the picture itself.
            await moderate(fake, "log_channel", channel=str(AGE_RESTRICTED_ID))
            assert "Queued as job 3" in await draw(fake, "a dark alley")
            await workers.next_job(3)
            workers.finish(3, 20, screening=workers.scores(3, crossing=1.0), picture=RED)

            def shown() -> Event | None:
                return next(
                    (
                        e
                        for e in fake.events
                        if e.channel_id == AGE_RESTRICTED_ID
                        and "Picture withheld · job 3" in message_text(e)
                    ),
                    None,
                )

            entry = await fake.wait_for(shown, 30)
            assert entry.files == {"picture.png": RED}

            # The prompt meaning check is the worker's: its refusal fails the job and is logged.
            assert "Queued as job 4" in await draw(fake, "something")
            await workers.next_job(4)
            workers.fail(4, PROMPT_MEANING.code, {"concept": "nudity"})
            failed = await wait_for_card(fake, 4, "Could not draw this")
            assert "too close to “nudity”" in message_text(failed)

            def meaning() -> Event | None:
                return next(
                    (
                        e
                        for e in fake.events
                        if e.channel_id == AGE_RESTRICTED_ID
                        and "Prompt refused" in message_text(e)
                        and "its meaning" in message_text(e)
                    ),
                    None,
                )

            await fake.wait_for(meaning, 30)
            assert running.store.job(4).status == "failed"  # type: ignore[union-attr]

    run(scenario())


def test_a_prompt_too_close_in_meaning_is_refused_before_anything_is_queued(
    model_files: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the meaning check on, a worker checks each prompt before it is queued; the member
    hears at once, in their language, and nothing is queued. No worker, or none answering in
    time, refuses too: the check fails closed."""
    monkeypatch.setattr(scheduler, "CHECK_TIMEOUT_S", 0.5)

    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            await moderate(fake, "log_channel", channel=str(LOG_CHANNEL_ID))
            assert "Queued as job 1" in await draw(fake, "a naked statue")  # the check is off
            assert workers.checks == []
            assert "from the next drawing on" in await moderate(fake, "meaning", on=True)
            workers.unsafe = {"naked": "nudity", "裸": "nudity"}
            refused = await draw(fake, "a naked statue | blurry:-1")
            assert refused == (
                "Your prompt comes too close in meaning to “nudity”, which is not allowed on "
                "this server. Nothing was queued."
            )
            japanese = await draw(fake, "裸の像", member=YUKI)
            assert japanese.startswith("プロンプトの意味が「nudity」に近すぎるため")
            assert [(c.prompt, c.text_encoder) for c in workers.checks] == [
                ("a naked statue | blurry:-1", "clip"),
                ("裸の像", "clip"),  # as the bot's [models] text_encoder says
            ]
            assert running.store.job(2) is None  # nothing was queued
            logged = await wait_for_log(fake, "Prompt refused")
            assert "its meaning" in message_text(logged)
            assert "Found: nudity" in message_text(logged)
            # A prompt far from every concept is checked, then queued.
            assert "Queued as job 2" in await draw(fake, "a lighthouse", member=BOB)
            assert len(workers.checks) == 3
            # No answer in time: refused, and the late answer is ignored.
            workers.meaning_silent = True
            unchecked = await draw(fake, "a lighthouse")
            assert unchecked == (
                "This server checks what prompts mean, and no drawing worker could check yours "
                "just now. Try again in a moment."
            )
            workers.say(MeaningChecked(workers.checks[-1].check_id, checked=True))
            workers.meaning_silent = False
            # A worker that could not check (no screener, say) refuses; no worker at all too.
            workers.meaning_silent = True
            asking = asyncio.create_task(draw(fake, "a harbour"))
            await fake.wait_for(lambda: len(workers.checks) == 5)
            workers.say(MeaningChecked(workers.checks[-1].check_id, checked=False))
            assert await asking == unchecked
            workers.leave()
            assert await draw(fake, "a harbour") == unchecked
            assert len(workers.checks) == 5  # none asked: no worker is there
            assert running.store.active_count() == 2
            assert running.store.job(3) is None

    run(scenario())


def test_barred_members_cannot_draw_and_servers_stay_within_the_operators_floors(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    operator = (
        "require_picture_screening = false\nprompt_meaning = true\nrequire_prompt_meaning = true\n"
        'picture_concepts = [{ text = "a clown", threshold = 0.3 }]'
    )

    async def scenario() -> None:
        async with bot_with_puppets(
            tmp_path, model_files, joined_places=2, moderation=operator
        ) as (fake, running, _, workers):
            assert "Manage Server" in await moderate(fake, "bar", by=ALICE, member=BOB)
            assert (
                await moderate(fake, "bar", member=BOB) == f"<@{BOB.id}> can no longer draw here."
            )
            assert await moderate(fake, "bar", member=BOB) == f"<@{BOB.id}> is barred already."
            refused = await draw(fake, "a kite", member=BOB)
            assert refused == "This server's moderators have barred you from drawing here."
            assert running.store.active_count() == 0
            assert await moderate(fake, "unbar", member=BOB) == f"<@{BOB.id}> can draw here again."
            assert "Queued as job 1" in await draw(fake, "a kite", member=BOB)
            first = (await workers.next_job(1)).spec.screening
            assert first.pictures
            assert first.meaning
            assert first.concepts == (Concept(text="a clown", threshold=0.3),)

            # The operator requires the meaning check; screening is the server's to turn off.
            assert await moderate(fake, "meaning", on=False) == (
                "The bot's operator requires the prompt meaning check on every server."
            )
            assert await moderate(fake, "screening", on=False) == (
                "Pictures are no longer screened from the next drawing on."
            )
            added = await moderate(fake, "concept add", text="a spider", threshold=0.25)
            assert "“a spider”" in added
            listed = await moderate(fake, "list")
            assert "Picture screening: off" in listed
            assert "`a spider` (0.25)" in listed
            assert "Prompt meaning check: on" in listed
            assert "Queued as job 2" in await draw(fake, "a kite")
            second = (await workers.next_job(2)).spec.screening
            assert not second.pictures
            assert second.meaning
            assert second.concepts == (
                Concept(text="a clown", threshold=0.3),
                Concept(text="a spider", threshold=0.25),
            )
            # Unscreened, a crossing score no longer withholds.
            workers.finish(2, 20, screening=None)
            assert list((await wait_for_card(fake, 2, "Finished")).files) == ["pseudo-dalle-2.png"]
            assert await moderate(fake, "concept remove", text="a spider") == (
                "Pictures are no longer screened for “a spider”."
            )
            assert await moderate(fake, "concept remove", text="a spider") == (
                "This server does not screen for “a spider”."
            )

    run(scenario())


def test_a_members_picture_shows_on_the_card_only_where_it_may(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    """The picture a member gives is not screened: with screening on, its thumbnail shows on
    the card only in an age-restricted channel."""

    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=2) as (
            fake,
            _,
            _,
            workers,
        ):
            data = encoded(noise(64, 64), "PNG")
            for job, channel in ((1, CHANNEL_ID), (2, AGE_RESTRICTED_ID)):
                picture = fake.attachment("given.png", data, "image/png", width=64, height=64)
                asked = await fake.command(
                    ALICE, "draw", channel_id=channel, prompt="a lamp", image=picture
                )
                assert f"Queued as job {job}" in await fake.reply_to(asked)
                await workers.next_job(job)
                workers.finish(job, 20)
            plain = await wait_for_card(fake, 1, "Finished")
            assert set(plain.files) == {"pseudo-dalle-1.png"}
            shown = await wait_for_card(fake, 2, "Finished", channel_id=AGE_RESTRICTED_ID)
            assert set(shown.files) == {"pseudo-dalle-2.png", "pseudo-dalle-2-given.png"}

    run(scenario())


@pytest.mark.slow
def test_the_real_worker_screens_what_it_sends_and_a_crossing_picture_stays_out(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    """With the real worker on the tiny models: a concept every picture crosses (a threshold
    below any cosine) keeps every picture of a job out of a plain channel and out of a thread
    of one, previews and time-lapse included, and lets them into an age-restricted channel."""
    planted = (
        "require_picture_screening = true\n"
        'picture_concepts = [{ text = "a lighthouse at night", threshold = -1.0 }]'
    )

    async def scenario() -> None:
        async with running_bot(tmp_path, model_files, moderation=planted) as (fake, running, _):
            for job, channel in ((1, CHANNEL_ID), (2, THREAD_ID), (3, AGE_RESTRICTED_ID)):
                asked = await fake.command(
                    ALICE,
                    "draw",
                    channel_id=channel,
                    prompt="a lighthouse at night",
                    iterations=12,
                    size=64,
                    timelapse=True,
                )
                assert f"Queued as job {job}" in await fake.reply_to(asked)
                await wait_for_card(fake, job, "Finished", channel_id=channel, timeout=120)
            assert files_of(fake, 1, CHANNEL_ID) == []
            assert files_of(fake, 2, THREAD_ID) == []
            assert WITHHELD in message_text(await wait_for_card(fake, 1, "Finished"))
            shown = await wait_for_card(fake, 3, "Finished", channel_id=AGE_RESTRICTED_ID)
            assert "pseudo-dalle-3.png" in shown.files
            assert any("timelapse" in name for name in shown.files)
            assert [running.store.job(j).withheld for j in (1, 2, 3)] == [True, True, False]  # type: ignore[union-attr]

    run(scenario())


MEANING_ON = f"{UNSCREENED}\nprompt_meaning = true\nrequire_prompt_meaning = true"
NAKED_REFUSED = (
    "Your prompt comes too close in meaning to “naked”, which is not allowed on this server. "
    "Nothing was queued."
)


@pytest.mark.slow
def test_the_local_worker_checks_prompts_by_meaning_before_they_are_queued(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    """The worker process checks the prompt with its own tiny CLIP: "naked" is the first unsafe
    concept's own text (cosine 1), "a cat" is measured far enough from every concept."""

    async def scenario() -> None:
        async with running_bot(tmp_path, model_files, moderation=MEANING_ON) as (fake, running, _):
            await until(running.app.scheduler.workers, 120)
            assert await draw(fake, "naked") == NAKED_REFUSED
            assert running.store.job(1) is None
            asked = await fake.command(ALICE, "draw", prompt="a cat", iterations=2, size=64)
            assert "Queued as job 1" in await fake.reply_to(asked)
            await wait_for_card(fake, 1, "Finished", timeout=120)

    run(scenario())


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.e2e
def test_a_redis_worker_checks_prompts_by_meaning_before_they_are_queued(
    model_files: ModelFiles, tmp_path: Path, redis_server: RedisServer
) -> None:
    async def scenario() -> None:
        url = f'url = "{redis_server.url}"'
        async with running_bot(tmp_path, model_files, redis=url, moderation=MEANING_ON) as (
            fake,
            running,
            _,
        ):
            worker = WorkerProcess(redis_server.url, "gpu-a", tmp_path / "gpu-a.log")
            try:
                await until(running.app.scheduler.workers, 120)
                assert await draw(fake, "a cat | naked") == NAKED_REFUSED
                assert "Queued as job 1" in await draw(fake, "a cat | naked:-1")
                # The worker is gone: nobody can check, and the check fails closed.
                worker.kill()
                await until(lambda: not running.app.scheduler.workers(), 60)
                assert "no drawing worker could check yours" in await draw(fake, "a cat")
            finally:
                worker.kill()

    run(scenario())
