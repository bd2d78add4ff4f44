"""Pictures in, on Discord: /draw's image options, "Draw from this image" and its form, every
refusal, the stored copy across a restart, the card's thumbnail, Continue and Reroll.

The real bot runs against the fake Discord, which is also the CDN its pictures come from: each
picture is fetched and re-encoded by the bot's real intake. Below the bot, the workers are the
test's puppets (`tests.fake_workers`): what would reach a worker is the `StartJob` the scheduler
hands them, its spec naming the pictures and its `pictures` carrying their bytes. One test draws
on the real worker: the picture drawn, continued and rerolled.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import Config, load_config
from bot.i18n import catalog
from bot.jobs.pictures import THUMBNAIL_SIDE
from bot.ops.messages import all_messages
from bot.workers.local import LocalWorker
from generator.contract.images import MAX_INPUT_BYTES
from generator.contract.jobs import ParentJob, PictureData, PictureRef
from generator.contract.protocol import StartJob, b64_to_png, png_to_b64
from generator.contract.reasons import REASONS
from generator.intake.images import reencode, sha256

from .bot_harness import (
    Running,
    cards_of,
    run,
    running_bot,
    start_bot,
    text_of,
    wait_for_card,
    wait_for_job,
    write_config,
)
from .conftest import ModelFiles
from .fake_discord import ADMIN, ALICE, BOB, GUILD_ID, SIGNATURE, YUKI, Event, FakeDiscord
from .fake_workers import FakeWorkers

pytestmark = pytest.mark.e2e

ROOMY = (
    "default_iterations = 3\nmax_iterations = 2000\nmax_queued_per_user = 5\n"
    "progress_interval_s = 2\nmax_size = 512"
)
MENU = "Draw from this image"


def picture(kind: str = "PNG", width: int = 96, height: int = 64, seed: int = 0) -> bytes:
    """A noisy picture (so that it does not compress to almost nothing) in format `kind`."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, format=kind)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 20_000) -> bytes:
    """A PNG of a few KB whose header says it is `side` x `side` pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * side) * 4)
    chunks = _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def truncated_jpeg() -> bytes:
    whole = picture("JPEG", 256, 256)
    return whole[: len(whole) // 2]


@contextlib.asynccontextmanager
async def idle_bot(
    tmp_path: Path, model_files: ModelFiles, *, workers: FakeWorkers | None = None, **sections: str
) -> AsyncIterator[tuple[FakeDiscord, Running, Config]]:
    """The bot above puppet `workers` (by default ones that never join), so that its jobs wait
    until the test has a worker join."""
    sections = {"defaults": ROOMY, **sections}
    transport = workers if workers is not None else FakeWorkers()
    async with running_bot(tmp_path, model_files, transport=transport, **sections) as running:
        yield running


def given_file(event: Event, job_id: int) -> bytes | None:
    """The thumbnail of the picture job `job_id` was given, as a card carries it."""
    return event.files.get(f"pseudo-dalle-{job_id}-given.png")


def shows_thumbnail(event: Event, job_id: int) -> bool:
    thumbnail = event.payload["embeds"][0].get("thumbnail") or {}
    return thumbnail.get("url") == f"attachment://pseudo-dalle-{job_id}-given.png"


def side_of(png: bytes) -> int:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return max(image.size)


def bytes_of(job: StartJob, ref: PictureRef) -> bytes:
    """The bytes `job` carries for the picture `ref` names (exactly one entry has them)."""
    (data,) = [p for p in job.pictures if p.sha256 == ref.sha256]
    return b64_to_png(data.png_b64)


def dispatched(monkeypatch: pytest.MonkeyPatch) -> dict[int, StartJob]:
    """What the bot hands its local worker, by job id, from now on."""
    sent: dict[int, StartJob] = {}
    dispatch = LocalWorker.dispatch

    async def recording(self: LocalWorker, job: StartJob) -> str | None:
        sent[job.job_id] = job
        return await dispatch(self, job)

    monkeypatch.setattr(LocalWorker, "dispatch", recording)
    return sent


def test_every_reason_generator_intake_gives_is_translated() -> None:
    pictures = [reason.template for code, reason in REASONS.items() if "picture" in code]
    assert pictures
    assert set(pictures) <= set(all_messages())
    assert [p for p in pictures if catalog("ja").gettext(p) == p] == []


def test_draw_with_each_use_keeps_the_copy_shows_it_and_survives_a_restart(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    red, green, blue = picture(seed=1), picture("JPEG", 300, 200, seed=2), picture(seed=3)

    async def scenario() -> None:
        async with idle_bot(tmp_path, model_files) as (fake, running, config):
            files = [
                fake.attachment("red.png", red, "image/png", width=96, height=64),
                fake.attachment("green.jpg", green, "image/jpeg", width=300, height=200),
                fake.attachment("blue.png", blue, "image/png"),
            ]
            answers = [
                await fake.reply_to(
                    await fake.command(ALICE, "draw", prompt="a red lamp", image=files[0], size=64)
                ),
                await fake.reply_to(
                    await fake.command(ALICE, "draw", image=files[1], image_as="steer", size=64)
                ),
                await fake.reply_to(
                    await fake.command(
                        ALICE,
                        "draw",
                        prompt="a boat",
                        image=files[2],
                        image_as="both",
                        strength=0.8,
                        size=64,
                    )
                ),
            ]
            assert answers == [
                f"Queued as job {n}; its card is in this channel." for n in (1, 2, 3)
            ]
            assert [fake.hits(f) for f in files] == [1, 1, 1]
            jobs = [running.store.job(n) for n in (1, 2, 3)]
            assert [(j.spec.image_use, j.spec.init_strength, j.spec.prompt) for j in jobs if j] == [
                ("start", 0.5, "a red lamp"),
                ("steer", 0.5, ""),
                ("both", 0.8, "a boat"),
            ]
            assert side_of(reencode(green)) == 300  # the JPEG is kept as a PNG
            names = ("red.png", "green.jpg", "blue.png")
            for job, data, name in zip(jobs, (red, green, blue), names, strict=True):
                assert job is not None
                kept = running.store.picture(job)
                assert kept is not None
                assert kept.image.png == reencode(data)
                assert (kept.image.name, kept.image.sha256) == (name, sha256(kept.image.png))
                assert side_of(kept.thumbnail) <= THUMBNAIL_SIDE
            uses = {
                1: "Picture given: Starts from it (strength 0.5)",
                2: "Picture given: Steers towards it",
                3: "Picture given: Starts from it (strength 0.8) and steers towards it",
            }
            for job_id, line in uses.items():
                card = await wait_for_card(fake, job_id, "Waiting")
                assert line in text_of(card)
                assert shows_thumbnail(card, job_id)
                assert given_file(card, job_id) == running.store.thumbnail(job_id)
            # Nothing the bot sent names the member's upload.
            said = json.dumps([e.payload for e in fake.events])
            assert "/attachments/" not in said
            assert SIGNATURE not in said

            start_only = fake.attachment("x.png", red, "image/png")
            refused = await fake.reply_to(await fake.command(ALICE, "draw", image=start_only))
            assert refused.startswith("A picture to start from needs a prompt too")
            nothing = await fake.reply_to(await fake.command(ALICE, "draw", size=64))
            assert nothing == "Prompt is empty: describe what to draw."
            assert fake.hits(start_only) == 0
            assert running.store.job(4) is None

            # The bot stops before any worker took the jobs; back with a worker for them all.
            await running.stop()
            since = len(fake.events)
            again = load_config(
                write_config(tmp_path, fake, model_files, defaults=ROOMY), environ={}
            )
            workers = FakeWorkers()
            workers.join(places=3, clip_models=(config.models.clip,))
            restarted = await start_bot(again, fake, workers)
            try:
                start, steer, both = [await workers.next_job(n) for n in (1, 2, 3)]
                first = await wait_for_card(fake, 1, "Drawing", since=since)
                assert shows_thumbnail(first, 1)
                assert given_file(first, 1) == restarted.store.thumbnail(1)
                stored = [restarted.store.job(n) for n in (1, 2, 3)]
                assert [s.spec for s in (start, steer, both)] == [j.spec for j in stored if j]
            finally:
                await restarted.stop()
            # The copies kept in the store went to the worker: nothing was fetched again.
            assert [fake.hits(f) for f in files] == [1, 1, 1]
        assert start.spec.init_image is not None
        assert bytes_of(start, start.spec.init_image) == reencode(red)
        assert (start.spec.init_strength, start.spec.image_prompts) == (0.5, ())
        assert steer.spec.init_image is None
        assert [bytes_of(steer, p) for p in steer.spec.image_prompts] == [reencode(green)]
        assert (steer.spec.prompt, steer.spec.image_prompts[0].name) == ("", "green.jpg")
        assert both.spec.init_image is not None
        assert both.spec.image_prompts == (both.spec.init_image,)
        assert both.spec.init_image.sha256 == sha256(reencode(blue))
        assert both.spec.init_strength == 0.8
        # A picture used both ways travels once.
        blue_copy = reencode(blue)
        assert both.pictures == [
            PictureData(sha256=sha256(blue_copy), png_b64=png_to_b64(blue_copy))
        ]
        assert all(job.init_state is None for job in (start, steer, both))

    run(scenario())


def test_draw_from_this_image_opens_a_form_and_queues_like_draw(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    lamp = picture(seed=4)
    workers = FakeWorkers()

    async def scenario() -> None:
        async with idle_bot(tmp_path, model_files, workers=workers) as (fake, running, config):
            menu = next(c for c in fake.commands if c["name"] == MENU)
            assert menu["type"] == 3
            assert menu["name_localizations"]["ja"] == "この画像から描く"
            attachment = fake.attachment("lamp.png", lamp, "image/png", width=96, height=64)
            message = await fake.post(BOB, "look at this", [attachment])

            opened = await fake.context_menu(ALICE, MENU, message)
            form = await fake.modal(opened)
            assert form["title"] == MENU
            labels = [row["label"] for row in form["components"]]
            assert labels == ["What to draw", "Use the picture to", "Strength, 0 to 1"]
            use = form["components"][1]["component"]
            assert [(o["value"], o.get("default", False)) for o in use["options"]] == [
                ("start", True),
                ("steer", False),
                ("both", False),
            ]
            assert form["components"][2]["component"]["value"] == "0.5"
            assert fake.hits(attachment) == 0  # fetched only when the form is sent

            sent = await fake.submit(ALICE, opened, prompt="", use="steer", strength="")
            assert await fake.reply_to(sent) == "Queued as job 1; its card is in this channel."
            job = running.store.job(1)
            assert job is not None
            assert (job.spec.image_use, job.spec.init_strength, job.spec.prompt) == (
                "steer",
                0.5,
                "",
            )
            kept = running.store.picture(job)
            assert kept is not None
            assert kept.image.png == reencode(lamp)
            card = await wait_for_card(fake, 1, "Waiting")
            assert shows_thumbnail(card, 1)

            again = await fake.context_menu(ALICE, MENU, message)
            firm = await fake.submit(ALICE, again, prompt="a lamp at dusk", strength="0,9")
            assert "job 2" in await fake.reply_to(firm)
            second = running.store.job(2)
            assert second is not None
            assert (second.spec.image_use, second.spec.init_strength) == ("start", 0.9)

            third = await fake.context_menu(ALICE, MENU, message)
            wrong = await fake.submit(ALICE, third, prompt="a lamp", strength="2")
            assert await fake.reply_to(wrong) == (
                "The strength must be a number from 0 to 1, like 0.5."
            )
            assert fake.hits(attachment) == 2
            assert running.store.job(3) is None

            japanese = await fake.context_menu(YUKI, MENU, message)
            form = await fake.modal(japanese)
            assert form["title"] == "この画像から描く"
            labels = [row["label"] for row in form["components"]]
            assert labels[:2] == ["描きたいもの", "画像の使い方"]
            assert labels[2].startswith("強さ")
            wrong = await fake.submit(YUKI, japanese, prompt="ランプ", strength="2")
            assert await fake.reply_to(wrong) == "強さは 0.5 のような 0〜1 の数にしてください。"
            assert fake.hits(attachment) == 2

            text = fake.attachment("notes.txt", b"hello", "text/plain")
            plain = await fake.post(BOB, "no picture here", [text])
            answer = await fake.reply_to(await fake.context_menu(ALICE, MENU, plain))
            assert answer == "This message has no picture to draw from."
            huge = fake.attachment("huge.png", lamp, "image/png", size=9 * 2**20)
            big = await fake.post(BOB, "too big", [huge])
            answer = await fake.reply_to(await fake.context_menu(ALICE, MENU, big))
            assert answer == "The picture is too big (9 MiB; at most 8 MiB)."
            assert fake.hits(huge) == 0

            # What the form asked for is what a worker is given.
            workers.join(places=2, clip_models=(config.models.clip,))
            steered, started = await workers.next_job(1), await workers.next_job(2)
            copy = reencode(lamp)
            assert steered.spec.init_image is None
            assert [p.name for p in steered.spec.image_prompts] == ["lamp.png"]
            assert bytes_of(steered, steered.spec.image_prompts[0]) == copy
            assert (started.spec.prompt, started.spec.init_strength) == ("a lamp at dusk", 0.9)
            assert (started.spec.image_prompts, len(started.pictures)) == ((), 1)
            assert started.spec.init_image is not None
            assert bytes_of(started, started.spec.init_image) == copy

    run(scenario())


# What a member gives, and what they are told: (name, data, content type, declared size,
# declared width and height, served status, served after seconds, fetched?, answer).
REFUSALS: list[tuple[str, bytes, str, int | None, int | None, int, float, bool, str]] = [
    (
        "bomb.png",
        png_bomb(),
        "image/png",
        None,
        None,
        200,
        0.0,
        True,
        "The picture has too many pixels (at most 16.8 million).",
    ),
    (
        "bomb-said.png",
        png_bomb(),
        "image/png",
        None,
        20_000,
        200,
        0.0,
        False,
        "The picture has too many pixels (at most 16.8 million).",
    ),
    (
        "old.bmp",
        picture("BMP"),
        "image/bmp",
        None,
        None,
        200,
        0.0,
        False,
        "The picture is of type image/bmp: send a PNG, JPEG, WebP or GIF.",
    ),
    (
        "bmp.png",
        picture("BMP"),
        "image/png",
        None,
        None,
        200,
        0.0,
        True,
        "The file is not a PNG, JPEG, WebP or GIF picture.",
    ),
    (
        "words.png",
        b"not a picture at all\n" * 20,
        "image/png",
        None,
        None,
        200,
        0.0,
        True,
        "The file is not a PNG, JPEG, WebP or GIF picture.",
    ),
    (
        "cut.jpg",
        truncated_jpeg(),
        "image/jpeg",
        None,
        None,
        200,
        0.0,
        True,
        "The picture is damaged or cut short.",
    ),
    (
        "huge.png",
        picture(),
        "image/png",
        9 * 2**20,
        None,
        200,
        0.0,
        False,
        "The picture is too big (9 MiB; at most 8 MiB).",
    ),
    (
        "liar.png",
        b"\0" * (MAX_INPUT_BYTES + 2**20),
        "image/png",
        1000,
        None,
        200,
        0.0,
        True,
        "The picture is too big (more than 8 MiB).",
    ),
    (
        "gone.png",
        picture(),
        "image/png",
        None,
        None,
        404,
        0.0,
        True,
        "The picture could not be fetched from Discord; try again.",
    ),
    (
        "slow.png",
        picture(),
        "image/png",
        None,
        None,
        200,
        3.0,
        True,
        "The picture took too long to arrive; try again.",
    ),
]


async def refuse_each(fake: FakeDiscord) -> list[tuple[dict[str, Any], bool]]:
    """/draw with each picture of `REFUSALS`, then with one that is not on Discord's servers;
    each answer is its refusal. The first attachments, each with whether the bot fetches it."""
    sent = []
    for name, data, kind, size, side, status, delay, fetched, said in REFUSALS:
        attachment = fake.attachment(
            name, data, kind, size=size, width=side, height=side, status=status, delay_s=delay
        )
        asked = await fake.command(ALICE, "draw", prompt="a cat", image=attachment)
        assert await fake.reply_to(asked) == said, name
        sent.append((attachment, fetched))
    elsewhere = fake.attachment(
        "far.png",
        picture(),
        "image/png",
        url=f"{fake.base_url.replace('127.0.0.1', 'localhost')}/attachments/1/2/far.png",
    )
    asked = await fake.command(ALICE, "draw", prompt="a cat", image=elsewhere)
    assert await fake.reply_to(asked) == "The picture is not on Discord's servers."
    return sent


def test_every_refusal_is_a_short_message_and_queues_nothing(
    model_files: ModelFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with idle_bot(tmp_path, model_files, images="fetch_timeout_s = 1") as (
            fake,
            running,
            _,
        ):
            for attachment, fetched in await refuse_each(fake):
                assert fake.hits(attachment) == int(fetched), attachment["filename"]
            bmp = fake.attachment("old.bmp", picture("BMP"), "image/bmp")
            japanese = await fake.reply_to(await fake.command(YUKI, "draw", prompt="猫", image=bmp))
            assert (
                japanese == "画像の種類が image/bmp です。PNG・JPEG・WebP・GIF を送ってください。"
            )

            shown = await fake.reply_to(await fake.command(BOB, "help"))
            assert "Pictures: on · PNG, JPEG, WebP or GIF, at most 8 MiB and 16.8 million " in (
                shown
            )
            off = await fake.reply_to(await fake.command(ADMIN, "drawconfig", image_inputs=False))
            assert "Pictures: switched off on this server" in off
            assert not running.store.guild_settings(GUILD_ID).image_inputs
            fine = fake.attachment("fine.png", picture(), "image/png")
            asked = await fake.command(ALICE, "draw", prompt="a cat", image=fine)
            assert await fake.reply_to(asked) == "Pictures are switched off on this server."
            message = await fake.post(BOB, "a picture", [fine])
            answer = await fake.reply_to(await fake.context_menu(ALICE, MENU, message))
            assert answer == "Pictures are switched off on this server."
            assert fake.hits(fine) == 0

            assert running.store.job(1) is None
            assert not [e for e in fake.events if e.kind == "create"]
            plain = await fake.reply_to(await fake.command(ALICE, "draw", prompt="a cat"))
            assert plain == "Queued as job 1; its card is in this channel."

    run(scenario())
    # The bot's own lines, at every level (discord.py's debug lines echo the gateway's events).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pseudo_dalle"))
    assert "could not fetch the picture" in logged
    assert SIGNATURE.split("&")[0] not in logged
    assert "hm=" not in logged
    assert "not a picture at all" not in logged


def test_the_operator_switches_pictures_off_for_every_server(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with idle_bot(tmp_path, model_files, images="enabled = false") as (fake, _, _):
            attachment = fake.attachment("fine.png", picture(), "image/png")
            asked = await fake.command(ALICE, "draw", prompt="a cat", image=attachment)
            assert await fake.reply_to(asked) == "The bot's operator has switched pictures off."
            message = await fake.post(BOB, "a picture", [attachment])
            answer = await fake.reply_to(await fake.context_menu(ALICE, MENU, message))
            assert answer == "The bot's operator has switched pictures off."
            assert fake.hits(attachment) == 0
            shown = await fake.reply_to(await fake.command(BOB, "help"))
            assert "Pictures: switched off by the bot's operator" in shown
            on = await fake.reply_to(await fake.command(ADMIN, "drawconfig", image_inputs=True))
            assert "The bot's operator has switched pictures off for every server" in on
            plain = await fake.reply_to(await fake.command(ALICE, "draw", prompt="a cat"))
            assert plain == "Queued as job 1; its card is in this channel."

    run(scenario())


@pytest.mark.slow
def test_a_picture_job_is_drawn_and_continue_and_reroll_keep_its_picture(
    model_files: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = dispatched(monkeypatch)
    lamp = picture(seed=5)

    async def scenario() -> None:
        async with running_bot(tmp_path, model_files, defaults=ROOMY) as (fake, running, _):
            attachment = fake.attachment("lamp.png", lamp, "image/png")
            asked = await fake.command(
                ALICE,
                "draw",
                prompt="a lamp",
                image=attachment,
                image_as="both",
                strength=0.7,
                iterations=6,
                size=64,
            )
            assert "Queued as job 1" in await fake.reply_to(asked)
            final = await wait_for_card(fake, 1, "Finished")
            cards = cards_of(fake, 1)
            assert all(given_file(e, 1) and shows_thumbnail(e, 1) for e in cards)
            assert final.files["pseudo-dalle-1.png"] != given_file(final, 1)
            card = final.message_id
            assert card is not None

            continued = await fake.reply_to(await fake.click(ALICE, card, "draw:continue:1"))
            assert "Continuing as job 2" in continued
            second = await wait_for_job(running.store, 2, lambda j: j.status == "done")
            rerolled = await fake.reply_to(await fake.click(BOB, card, "draw:reroll:1"))
            assert "Rerolling as job 3" in rerolled
            third = await wait_for_job(running.store, 3, lambda j: j.status == "done")
            continued_card = await wait_for_card(fake, 2, "Finished")
            assert "Picture given: Steers towards it" in text_of(continued_card)
            assert shows_thumbnail(continued_card, 2)
            assert second.spec.parent == ParentJob(id=1, how="continue")
            assert second.spec.image_use == "steer"
            assert third.spec.parent == ParentJob(id=1, how="reroll")
            assert (third.spec.image_use, third.spec.init_strength) == ("both", 0.7)

        first, again, reroll = sent[1], sent[2], sent[3]
        copy = reencode(lamp)
        assert first.spec.init_image is not None
        assert bytes_of(first, first.spec.init_image) == copy
        assert first.spec.init_strength == 0.7
        assert first.spec.image_prompts == (first.spec.init_image,)
        # Continue goes on from where job 1 ended, still steered by the picture.
        assert again.init_state is not None
        assert again.spec.init_image is None
        assert [bytes_of(again, p) for p in again.spec.image_prompts] == [copy]
        # Reroll starts from the picture again, with a new seed.
        assert reroll.spec.init_image == first.spec.init_image
        assert reroll.spec.image_prompts == first.spec.image_prompts
        assert reroll.spec.init_strength == 0.7
        assert reroll.spec.seed != first.spec.seed
        assert reroll.init_state is None
        assert reroll.pictures == first.pictures

    run(scenario())
