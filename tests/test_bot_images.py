"""Pictures in, on Discord: /draw's image options, "Draw from this image" and its form, every
refusal, the stored copy across a restart, the card's thumbnail, Continue and Reroll.

The real bot runs against the fake Discord, which is also the CDN its pictures come from. Most
tests need no drawing: their worker cannot load its models (and is not restarted), so jobs stay
queued and what the bot did is all there is to see.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import load_config
from bot.workers.local import LocalWorker
from bot.ops.messages import all_messages
from bot.jobs.pictures import THUMBNAIL_SIDE
from generator.contract.images import MAX_INPUT_BYTES
from generator.contract.protocol import StartJob
from generator.intake import images as intake
from generator.intake.images import reencode, sha256

from .bot_harness import (
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

pytestmark = pytest.mark.e2e

# A worker that never gets ready: jobs wait in the queue, and no CPU goes to drawing.
NO_MODELS = 'clip = "/nonexistent/clip.pt"\ndecoder = "/nonexistent/decoder.pkl"\ndevice = "cpu"'
IDLE_WORKER = "cutouts = 4\nrestart_delay_s = 600\nthreads = 1"
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


def idle_bot(tmp_path: Path, model_files: ModelFiles, **sections: str) -> Any:
    """The bot with a worker that never gets ready, so its jobs stay queued."""
    sections = {"models": NO_MODELS, "worker": IDLE_WORKER, "defaults": ROOMY, **sections}
    return running_bot(tmp_path, model_files, **sections)


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


def dispatched(monkeypatch: pytest.MonkeyPatch) -> dict[int, StartJob]:
    """What the bot hands its local worker, by job id, from now on."""
    sent: dict[int, StartJob] = {}
    dispatch = LocalWorker.dispatch

    async def recording(self: LocalWorker, job: StartJob) -> str | None:
        sent[job.job_id] = job
        return await dispatch(self, job)

    monkeypatch.setattr(LocalWorker, "dispatch", recording)
    return sent


async def until(check: Callable[[], Any], timeout: float = 60) -> Any:
    async def poll() -> Any:
        while not (found := check()):
            await asyncio.sleep(0.05)
        return found

    return await asyncio.wait_for(poll(), timeout)


def test_every_reason_generator_intake_gives_is_translated() -> None:
    reasons = {
        intake.TOO_BIG,
        intake.NOT_LISTED,
        intake.NOT_AN_IMAGE,
        intake.TOO_MANY_PIXELS,
        intake.DAMAGED,
    }
    assert reasons <= set(all_messages())


def test_draw_with_each_use_keeps_the_copy_shows_it_and_survives_a_restart(
    model_files: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = dispatched(monkeypatch)
    red, green, blue = picture(seed=1), picture("JPEG", 300, 200, seed=2), picture(seed=3)

    async def scenario() -> None:
        async with idle_bot(tmp_path, model_files) as (fake, running, _):
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
            assert [(j.image_use, j.init_strength, j.prompt) for j in jobs if j] == [
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

            # The bot stops before any worker took the jobs; back with a worker that draws.
            await running.stop()
            since = len(fake.events)
            config = load_config(
                write_config(tmp_path, fake, model_files, defaults=ROOMY), environ={}
            )
            again = await start_bot(config, fake)
            try:
                await until(lambda: {1, 2, 3} <= set(sent))
                first = await wait_for_card(fake, 1, "Drawing", since=since)
                assert shows_thumbnail(first, 1)
                assert given_file(first, 1) == again.store.thumbnail(1)
            finally:
                await again.stop()
        start, steer, both = sent[1], sent[2], sent[3]
        assert start.init_image is not None
        assert start.init_image.image().png == reencode(red)
        assert (start.init_strength, start.image_prompts) == (0.5, [])
        assert steer.init_image is None
        assert [p.image().png for p in steer.image_prompts] == [reencode(green)]
        assert (steer.prompt, steer.image_prompts[0].name) == ("", "green.jpg")
        assert both.init_image is not None
        assert both.image_prompts == [both.init_image]
        assert both.init_image.sha256 == sha256(reencode(blue))
        assert both.init_strength == 0.8

    run(scenario())


def test_draw_from_this_image_opens_a_form_and_queues_like_draw(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    lamp = picture(seed=4)

    async def scenario() -> None:
        async with idle_bot(tmp_path, model_files) as (fake, running, _):
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
            assert (job.image_use, job.init_strength, job.prompt) == ("steer", 0.5, "")
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
            assert (second.image_use, second.init_strength) == ("start", 0.9)

            third = await fake.context_menu(ALICE, MENU, message)
            wrong = await fake.submit(ALICE, third, prompt="a lamp", strength="2")
            assert await fake.reply_to(wrong) == (
                "The strength must be a number from 0 to 1, like 0.5."
            )
            assert fake.hits(attachment) == 2
            assert running.store.job(3) is None

            japanese = await fake.context_menu(YUKI, MENU, message)
            assert (await fake.modal(japanese))["title"] == "この画像から描く"

            text = fake.attachment("notes.txt", b"hello", "text/plain")
            plain = await fake.post(BOB, "no picture here", [text])
            answer = await fake.reply_to(await fake.context_menu(ALICE, MENU, plain))
            assert answer == "This message has no picture to draw from."
            huge = fake.attachment("huge.png", lamp, "image/png", size=9 * 2**20)
            big = await fake.post(BOB, "too big", [huge])
            answer = await fake.reply_to(await fake.context_menu(ALICE, MENU, big))
            assert answer == "The picture is too big (9 MiB; at most 8 MiB)."
            assert fake.hits(huge) == 0

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
            assert (second.parent_id, second.image_use) == (1, "steer")
            assert (third.parent_id, third.image_use, third.init_strength) == (None, "both", 0.7)

        first, again, reroll = sent[1], sent[2], sent[3]
        copy = reencode(lamp)
        assert first.init_image is not None
        assert first.init_image.image().png == copy
        assert (first.init_strength, first.image_prompts) == (0.7, [first.init_image])
        # Continue goes on from where job 1 ended, still steered by the picture.
        assert again.init_state is not None
        assert again.init_image is None
        assert [p.image().png for p in again.image_prompts] == [copy]
        # Reroll starts from the picture again, with a new seed.
        assert reroll.init_image == first.init_image
        assert reroll.image_prompts == first.image_prompts
        assert reroll.init_strength == 0.7
        assert reroll.init_state is None

    run(scenario())
