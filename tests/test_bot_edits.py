"""Edits on Discord, in the real bot over the fake Discord: the final card's Vary buttons, the
region picker (private, with the labelled picture, the select and the form), who may edit,
Remix, "Draw from this image" on a PNG that carries its tokens, and a parent whose tokens are
gone. The workers are the test's puppets: what an edit is reaches them as the `StartJob` the
scheduler hands over, its spec's edit and its `init_state`."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from bot.front.cogs.draw_from_image import MENU_NAME
from generator.contract.edits import (
    EDIT_KEY,
    TOKENS_KEY,
    EditSpec,
    TokenGrid,
    edit_iterations,
    unpack_free,
)
from generator.contract.jobs import ParentJob
from generator.contract.protocol import StartJob
from generator.contract.reasons import JOB_TOO_BIG
from generator.intake.images import sha256

from .bot_harness import (
    bot_with_puppets,
    custom_ids,
    run,
    running_bot,
    start_bot,
    text_of,
    wait_for_card,
)
from .conftest import ModelFiles
from .fake_discord import ADMIN, ALICE, BOB, GUILD_ID, YUKI, FakeDiscord, Member
from .fake_workers import FakeWorkers
from .pictures import encoded, noise

pytestmark = pytest.mark.e2e

FULL = 20  # the harness's default iterations
FINISHED_BUTTONS = [
    "draw:reroll:1",
    "draw:continue:1",
    "draw:subtle:1",
    "draw:strong:1",
    "draw:region:1",
    "draw:left:1",
    "draw:right:1",
    "draw:up:1",
    "draw:down:1",
    "draw:zoom15:1",
    "draw:zoom2:1",
    "draw:upsubtle:1",
    "draw:upcreative:1",
    "draw:delete:1",
    "draw:report:1",
]
NOT_YOURS = "Only the member who asked for this drawing or a server admin can edit it."
CELLS = [f"{column}{row}" for row in "1234" for column in "ABCD"]
EPHEMERAL = 64


def sent_state(job_id: int) -> str:
    """The continue state `FakeWorkers.finish` sends for `job_id`."""
    return base64.b64encode(f"state of job {job_id}".encode()).decode("ascii")


async def finished(
    fake: FakeDiscord,
    workers: FakeWorkers,
    job_id: int,
    prompt: str = "a lighthouse",
    member: Member = ALICE,
    **options: Any,
) -> int:
    """Job `job_id` drawn for `member` and finished; its card's message id."""
    asked = await fake.command(member, "draw", prompt=prompt, **options)
    assert f"Queued as job {job_id}" in await fake.reply_to(asked)
    await workers.next_job(job_id)
    workers.finish(job_id, FULL, picture=encoded(noise(64, 64), "PNG"))
    card = await wait_for_card(fake, job_id, "Finished")
    assert card.message_id is not None
    return card.message_id


async def done(fake: FakeDiscord, workers: FakeWorkers, job_id: int) -> StartJob:
    """The StartJob of job `job_id`, which then finishes."""
    start = await workers.next_job(job_id)
    workers.finish(job_id, start.spec.iterations)
    await wait_for_card(fake, job_id, "Finished")
    return start


async def answered(fake: FakeDiscord, interaction_id: int) -> dict[str, Any]:
    """The first answer to an interaction as the bot sent it (its callback's payload)."""
    payload = await fake.wait_for(lambda: fake.callbacks.get(interaction_id))
    return dict(payload)


def components(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in message["components"] for c in row["components"]]


def form_fields(form: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A form's inputs by custom_id, each with its label's text."""
    return {
        row["component"]["custom_id"]: {**row["component"], "label": row.get("label")}
        for row in form["components"]
    }


def tokens(free: tuple[bool, ...]) -> set[int]:
    return {index for index, on in enumerate(free) if on}


def cell_tokens(labels: list[str], side: int) -> set[int]:
    """The tokens of a `side` x `side` grid that the labelled cells cover, worked out by hand:
    each cell is a quarter of the columns and a quarter of the rows."""
    quarter = side // 4
    covered = set()
    for label in labels:
        column, row = "ABCD".index(label[0]), int(label[1]) - 1
        for y in range(row * quarter, (row + 1) * quarter):
            covered |= {y * side + x for x in range(column * quarter, (column + 1) * quarter)}
    return covered


def grid_png(grid: TokenGrid, prompt: str) -> bytes:
    """A PNG as pseudo-dalle writes it: the picture, its prompt and its token grid."""
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", prompt)
    info.add_text(TOKENS_KEY, grid.to_text())
    return encoded(noise(*grid.size), "PNG", pnginfo=info)


def test_the_final_card_varies_the_picture_subtly_and_strongly(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=2) as (
            fake,
            running,
            _,
            workers,
        ):
            card = await finished(fake, workers, 1, timelapse=True, quality="draft")
            final = await wait_for_card(fake, 1, "Finished")
            assert custom_ids(final) == FINISHED_BUTTONS
            rows = [[c["label"] for c in row["components"]] for row in final.payload["components"]]
            assert rows == [
                ["Reroll", "Continue", "Vary (Subtle)", "Vary (Strong)", "Vary (Region)"],
                ["⬅", "➡", "⬆", "⬇"],
                ["Zoom Out 1.5x", "Zoom Out 2x", "Upscale (Subtle)", "Upscale (Creative)"],
                ["Delete", "Report"],
            ]
            parent = running.store.job(1)
            assert parent is not None

            subtle = await fake.reply_to(await fake.click(ALICE, card, "draw:subtle:1"))
            assert subtle == "Varying it subtly as job 2."
            start = await done(fake, workers, 2)
            assert start.spec.edit == EditSpec(kind="subtle")
            assert start.spec.parent == ParentJob(id=1, how="edit")
            assert start.init_state == sent_state(1)
            assert start.spec.seed != parent.spec.seed
            assert start.spec.iterations == edit_iterations("subtle", FULL) == 5
            assert (start.spec.prompt, start.spec.timelapse, start.spec.quality) == (
                "a lighthouse",
                True,
                "draft",
            )
            assert (start.spec.width, start.spec.height) == (256, 256)  # draft's, as its parent
            assert start.spec.init_image is None
            assert "Edit: Vary (Subtle) of job 1" in text_of(await wait_for_card(fake, 2, "Fin"))

            strong = await fake.reply_to(await fake.click(ALICE, card, "draw:strong:1"))
            assert strong == "Varying it strongly as job 3."
            start = await done(fake, workers, 3)
            assert (start.spec.edit, start.spec.parent) == (
                EditSpec(kind="strong"),
                ParentJob(id=1, how="edit"),
            )
            assert start.init_state == sent_state(1)
            assert start.spec.iterations == edit_iterations("strong", FULL) == 12
            assert "Edit: Vary (Strong) of job 1" in text_of(await wait_for_card(fake, 3, "Fin"))
            # A Vary of a Vary starts from the tokens it ended with.
            card_3 = (await wait_for_card(fake, 3, "Finished")).message_id or 0
            await fake.reply_to(await fake.click(ALICE, card_3, "draw:subtle:3"))
            assert (await done(fake, workers, 4)).init_state == sent_state(3)

    run(scenario())


def test_vary_region_picks_cells_privately_and_redraws_only_them(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            config,
            workers,
        ):
            card = await finished(fake, workers, 1, size=64)
            since = len(fake.events)
            pressed = await fake.click(ALICE, card, "draw:region:1")
            first = await answered(fake, pressed)
            assert first["type"] == 5
            assert first["data"]["flags"] & EPHEMERAL  # private
            picker = await fake.answer(pressed)
            assert picker["flags"] & EPHEMERAL
            assert "Pick the cells to redraw" in picker["content"]
            [shown] = [e for e in fake.events[since:] if e.kind == "original"]
            with Image.open(io.BytesIO(shown.files["pseudo-dalle-cells.png"])) as grid:
                assert grid.size == (512, 512)  # 64 pixels, enlarged to be read
                assert grid.getpixel((128, 200)) == (255, 255, 255)  # the line between A and B
                assert grid.getpixel((128 + 64, 256 + 64)) != (255, 255, 255)  # B3 shows through
            # Nothing of the picker is posted in the channel.
            assert not [e for e in fake.events[since:] if e.kind in ("create", "edit")]
            select, button = components(picker)
            assert (select["custom_id"], select["min_values"]) == ("edit:cells:j1", 1)
            assert [o["value"] for o in select["options"]] == CELLS
            assert (button["custom_id"], button["disabled"]) == ("edit:words:j1:0000", True)

            chose = await fake.select(
                ALICE, fake.answers[pressed], "edit:cells:j1", ["C2", "B3", "B2"]
            )
            assert (await answered(fake, chose))["type"] == 7  # the picker itself changes
            select, button = components(fake.messages[fake.answers[pressed]])
            assert [o["value"] for o in select["options"] if o.get("default")] == ["B2", "C2", "B3"]
            assert not button.get("disabled")
            assert re.fullmatch(r"edit:words:j1:[0-9a-f]{4}", button["custom_id"])

            # The cells chosen are in the button: it works after the bot restarts.
            await running.stop()
            after = FakeWorkers()
            restarted = await start_bot(config, fake, after)
            try:
                after.join(clip_models=(config.models.clip,))
                opened = await fake.click(ALICE, fake.answers[pressed], button["custom_id"])
                form = await fake.modal(opened)
                assert form["title"] == "Vary (Region)"
                prompt = form_fields(form)["prompt"]
                assert prompt["value"] == "a lighthouse"  # filled in, to be changed
                assert prompt["label"] == "What to draw"
                assert form["components"][0]["description"] == "Cells to redraw: B2, C2, B3"
                sent = await fake.submit(ALICE, opened, prompt="a red door")
                assert await fake.reply_to(sent) == "Redrawing B2, C2, B3 as job 2."
                start = await after.next_job(2)
                edit = start.spec.edit
                assert edit is not None
                assert (edit.kind, edit.cells) == ("region", ("B2", "C2", "B3"))
                assert edit.free_b64 is not None
                free = unpack_free(edit.free_b64, 8 * 8)
                assert tokens(free) == cell_tokens(["B2", "C2", "B3"], 8)
                assert start.spec.prompt == "a red door"
                assert start.spec.parent == ParentJob(id=1, how="edit")
                assert start.init_state == sent_state(1)
                assert start.spec.iterations == edit_iterations("region", FULL)
                after.finish(2, start.spec.iterations)
                ended = await wait_for_card(fake, 2, "Finished")
                assert "Edit: Vary (Region) of job 1: B2, C2, B3" in text_of(ended)
            finally:
                await restarted.stop()

    run(scenario())


def test_only_the_member_who_drew_it_or_an_admin_may_edit_it(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            card = await finished(fake, workers, 1)
            for button in ("draw:subtle:1", "draw:strong:1", "draw:region:1"):
                pressed = await fake.click(BOB, card, button)
                assert await fake.reply_to(pressed) == NOT_YOURS
                assert (await answered(fake, pressed))["data"]["flags"] & EPHEMERAL
            japanese = await fake.reply_to(await fake.click(YUKI, card, "draw:subtle:1"))
            assert japanese == "この絵を編集できるのは、依頼したメンバーかサーバー管理者だけです。"
            assert running.store.job(2) is None
            # Reroll stays open to everyone, as before.
            rerolled = await fake.reply_to(await fake.click(BOB, card, "draw:reroll:1"))
            assert rerolled == "Rerolling as job 2."
            await done(fake, workers, 2)

            varied = await fake.reply_to(await fake.click(ADMIN, card, "draw:subtle:1"))
            assert varied == "Varying it subtly as job 3."
            job = running.store.job(3)
            assert job is not None
            assert (job.user_id, job.spec.parent) == (ADMIN.id, ParentJob(id=1, how="edit"))
            await done(fake, workers, 3)
            picker = await fake.answer(await fake.click(ADMIN, card, "draw:region:1"))
            assert components(picker)[0]["custom_id"] == "edit:cells:j1"

    run(scenario())


def test_remix_asks_for_the_words_first_and_off_it_draws_at_once(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            card = await finished(fake, workers, 1, prompt="a quiet harbour")
            shown = await fake.reply_to(await fake.command(ALICE, "settings"))
            assert shown.startswith("Remix is off")
            said = await fake.reply_to(await fake.command(ALICE, "settings", remix=True))
            assert said.startswith("Remix is on")
            assert running.store.remix(GUILD_ID, ALICE.id)
            assert not running.store.remix(GUILD_ID, BOB.id)

            for button, title, words, answer in (
                ("draw:reroll:1", "Reroll", "a stormy harbour", "Rerolling as job 2."),
                ("draw:subtle:1", "Vary (Subtle)", "a harbour at dusk", "Varying it subtly"),
                ("draw:strong:1", "Vary (Strong)", "a harbour in snow", "Varying it strongly"),
            ):
                opened = await fake.click(ALICE, card, button)
                form = await fake.modal(opened)
                assert form["title"] == title
                assert form_fields(form)["prompt"]["value"] == "a quiet harbour"
                sent = await fake.submit(ALICE, opened, prompt=words)
                assert (await fake.reply_to(sent)).startswith(answer)
                job_id = max(j.id for j in running.store.jobs_with_status("queued", "running"))
                assert (await done(fake, workers, job_id)).spec.prompt == words
            # The new words go through the same rules as /draw's.
            blocked = await fake.command(ADMIN, "moderation", subcommand="block", term="storm")
            await fake.reply_to(blocked)
            opened = await fake.click(ALICE, card, "draw:subtle:1")
            sent = await fake.submit(ALICE, opened, prompt="a storm at sea")
            assert await fake.reply_to(sent) == (
                "Your prompt says “storm”, which is not allowed on this server. Nothing was queued."
            )
            assert running.store.job(5) is None

            # Someone else's Remix is theirs: Bob's Reroll still draws at once.
            bob = await fake.click(BOB, card, "draw:reroll:1")
            assert await fake.reply_to(bob) == "Rerolling as job 5."
            assert (await answered(fake, bob))["type"] == 4
            await done(fake, workers, 5)

            off = await fake.reply_to(await fake.command(ALICE, "settings", remix=False))
            assert off.startswith("Remix is off")
            for button, answer in (
                ("draw:reroll:1", "Rerolling as job 6."),
                ("draw:subtle:1", "Varying it subtly as job 7."),
            ):
                pressed = await fake.click(ALICE, card, button)
                assert await fake.reply_to(pressed) == answer
                assert (await answered(fake, pressed))["type"] == 4  # no form
                job_id = int(answer.split()[-1].rstrip("."))
                assert (await done(fake, workers, job_id)).spec.prompt == "a quiet harbour"

    run(scenario())


def test_draw_from_this_image_offers_the_edits_of_a_png_that_carries_its_tokens(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    grid = TokenGrid(8, 8, 8192, "ab" * 32, tuple((7 * i) % 8192 for i in range(64)))
    drawn = grid_png(grid, "a harbour at dawn")

    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            attachment = fake.attachment("harbour.png", drawn, "image/png", width=64, height=64)
            message = await fake.post(BOB, "one I drew", [attachment])
            opened = await fake.context_menu(ALICE, MENU_NAME, message)
            sent = await fake.submit(ALICE, opened, prompt="", use="steer")
            offer = await fake.answer(sent)
            assert (await answered(fake, sent))["data"]["flags"] & EPHEMERAL
            assert "it can be edited exactly" in offer["content"]
            buttons = components(offer)
            assert [b["label"] for b in buttons] == [
                "Vary (Subtle)",
                "Vary (Strong)",
                "Vary (Region)",
            ]
            ids = [b["custom_id"] for b in buttons]
            assert all(re.fullmatch(r"edit:(subtle|strong|region):o[0-9a-f]{8}", i) for i in ids)
            assert running.store.job(1) is None  # nothing was drawn from it
            assert fake.hits(attachment) == 1

            pressed = await fake.click(ALICE, fake.answers[sent], ids[0])
            assert await fake.reply_to(pressed) == "Varying it subtly as job 1."
            start = await done(fake, workers, 1)
            assert start.init_state == base64.b64encode(grid.state()).decode("ascii")
            assert start.spec.edit == EditSpec(
                kind="subtle", decoder_sha256=grid.decoder_sha256, source_sha256=sha256(drawn)
            )
            assert start.spec.parent is None
            assert (start.spec.prompt, start.spec.width, start.spec.height) == (
                "a harbour at dawn",
                64,
                64,
            )
            assert (start.spec.init_image, start.spec.image_prompts, start.pictures) == (
                None,
                (),
                [],
            )
            card = await wait_for_card(fake, 1, "Finished")
            assert "Edit: Vary (Subtle) of a picture given" in text_of(card)

            # Its region: the picture fetched again, with its cells; the form's words are the
            # picture's own.
            picker = await fake.click(ALICE, fake.answers[sent], ids[2])
            cells = await fake.answer(picker)
            assert fake.hits(attachment) == 2
            target = ids[2].removeprefix("edit:region:")
            chose = await fake.select(ALICE, fake.answers[picker], f"edit:cells:{target}", ["D4"])
            await answered(fake, chose)
            _, button = components(fake.messages[fake.answers[picker]])
            asked = await fake.click(ALICE, fake.answers[picker], button["custom_id"])
            assert form_fields(await fake.modal(asked))["prompt"]["value"] == "a harbour at dawn"
            assert await fake.reply_to(await fake.submit(ALICE, asked)) == "Redrawing D4 as job 2."
            start = await done(fake, workers, 2)
            assert start.spec.edit is not None
            assert start.spec.edit.free_b64 is not None
            assert tokens(unpack_free(start.spec.edit.free_b64, 64)) == cell_tokens(["D4"], 8)
            assert start.spec.edit.decoder_sha256 == grid.decoder_sha256
            ended = await wait_for_card(fake, 2, "Finished")
            assert "Edit: Vary (Region) of a picture given: D4" in text_of(ended)
            assert "pseudo-dalle-cells.png" in [a["filename"] for a in cells["attachments"]]

            # The words typed in the form win over the picture's; the offer is the member's.
            again = await fake.context_menu(ALICE, MENU_NAME, message)
            typed = await fake.submit(ALICE, again, prompt="a red boat")
            strong = components(await fake.answer(typed))[1]["custom_id"]
            other = await fake.click(BOB, fake.answers[typed], strong)
            assert "expired" in await fake.reply_to(other)
            mine = await fake.click(ALICE, fake.answers[typed], strong)
            assert await fake.reply_to(mine) == "Varying it strongly as job 3."
            assert (await done(fake, workers, 3)).spec.prompt == "a red boat"

            # A PNG without a grid is drawn from, as before.
            plain = fake.attachment(
                "plain.png", encoded(noise(64, 64), "PNG"), "image/png", width=64, height=64
            )
            posted = await fake.post(BOB, "a photo", [plain])
            opened = await fake.context_menu(ALICE, MENU_NAME, posted)
            sent = await fake.submit(ALICE, opened, prompt="a lamp")
            assert await fake.reply_to(sent) == "Queued as job 4; its card is in this channel."
            job = running.store.job(4)
            assert job is not None
            assert (job.spec.edit, job.spec.image_use) == (None, "start")

    run(scenario())


def test_an_edit_of_a_drawing_whose_tokens_are_gone_says_where_they_still_are(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            running,
            _,
            workers,
        ):
            card = await finished(fake, workers, 1)
            assert running.store.forget_continue_states(time.time() + 1) == 1
            for button in ("draw:subtle:1", "draw:strong:1", "draw:region:1"):
                answer = await fake.reply_to(await fake.click(ALICE, card, button))
                assert "kept 30 days and is gone" in answer
                assert "use Draw from this image on the picture" in answer
            assert running.store.job(2) is None

            # A card whose picture was withheld has no picture to pick a region of.
            assert "job 2" in await fake.reply_to(await fake.command(ALICE, "draw", prompt="x"))
            await workers.next_job(2)
            workers.finish(2, FULL, screening=workers.scores(2, crossing=1.0))
            withheld = (await wait_for_card(fake, 2, "Finished")).message_id or 0
            answer = await fake.reply_to(await fake.click(ALICE, withheld, "draw:region:2"))
            assert answer == "This card shows no picture, so there is no part to pick."

    run(scenario())


@pytest.mark.slow
def test_the_real_worker_keeps_every_token_outside_the_region(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    """Through the bot to the real worker on the tiny models: a region edit of 50 iterations
    changes no token outside the cells chosen on the card's own picture."""
    defaults = (
        "default_iterations = 84\nmax_iterations = 2000\nmax_queued_per_user = 2\n"
        "progress_interval_s = 2\nmax_size = 512"
    )
    assert edit_iterations("region", 84) == 50

    async def scenario() -> None:
        async with running_bot(tmp_path, model_files, defaults=defaults) as (fake, running, _):
            asked = await fake.command(ALICE, "draw", prompt="a lighthouse", iterations=8, size=64)
            assert "Queued as job 1" in await fake.reply_to(asked)
            card = (await wait_for_card(fake, 1, "Finished", timeout=120)).message_id or 0
            pressed = await fake.click(ALICE, card, "draw:region:1")
            await fake.answer(pressed)
            picker = fake.answers[pressed]
            chose = await fake.select(ALICE, picker, "edit:cells:j1", ["B2", "C3"])
            await answered(fake, chose)
            _, button = components(fake.messages[picker])
            opened = await fake.click(ALICE, picker, button["custom_id"])
            sent = await fake.submit(ALICE, opened, prompt="a red door")
            assert await fake.reply_to(sent) == "Redrawing B2, C3 as job 2."
            await wait_for_card(fake, 2, "Finished", timeout=120)
            parent, edit = running.store.job(1), running.store.job(2)
            assert parent is not None
            assert edit is not None
            assert (edit.status, edit.steps) == ("done", 50)
            before, after = (
                TokenGrid.from_state(base64.b64decode(str(job.continue_state)), "0" * 64).tokens
                for job in (parent, edit)
            )
            inside = cell_tokens(["B2", "C3"], 8)
            assert [after[i] for i in range(64) if i not in inside] == [
                before[i] for i in range(64) if i not in inside
            ]
            assert any(after[i] != before[i] for i in inside)  # the region was redrawn

    run(scenario())


def _grid_state(rows: int, cols: int, seed: int) -> tuple[TokenGrid, str]:
    tokens = tuple((seed * 7919 + 31 * i) % 8192 for i in range(rows * cols))
    grid = TokenGrid(rows, cols, 8192, "", tokens)
    return grid, base64.b64encode(grid.state()).decode("ascii")


async def drawn_grid(
    fake: FakeDiscord,
    workers: FakeWorkers,
    job_id: int,
    side: int,
    *,
    member: Member = ALICE,
    seed: int = 1,
    picture: bytes | None = None,
) -> tuple[int, TokenGrid, str]:
    """Job `job_id`, a `side` x `side` drawing for `member`, finished with a real token grid
    (seeded by `seed`) as its state; its card's message id, that grid and that state."""
    asked = await fake.command(member, "draw", prompt="a harbour", size=side)
    assert f" {job_id}" in await fake.reply_to(asked)
    await workers.next_job(job_id)
    grid, state = _grid_state(side // 8, side // 8, seed=seed)
    workers.finish(job_id, FULL, state=state, picture=picture)
    card = (await wait_for_card(fake, job_id, "Finished")).message_id
    assert card is not None
    return card, grid, state


def test_pan_and_make_square_grow_the_canvas_keeping_every_old_token(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=2) as (
            fake,
            _,
            _,
            workers,
        ):
            card, old, _ = await drawn_grid(fake, workers, 1, 64)
            assert "draw:square:1" not in custom_ids(await wait_for_card(fake, 1, "Finished"))
            # Only the member who drew it, or an admin, may grow it.
            assert await fake.reply_to(await fake.click(BOB, card, "draw:right:1")) == NOT_YOURS
            said = await fake.reply_to(await fake.click(ALICE, card, "draw:right:1"))
            assert said == "Growing the picture as job 2."
            start = await workers.next_job(2)
            spec = start.spec
            assert (spec.width, spec.height) == (96, 64)
            assert spec.parent == ParentJob(id=1, how="edit")
            assert spec.edit is not None
            assert (spec.edit.kind, spec.edit.direction) == ("pan", "right")
            assert start.init_state is not None
            grown = TokenGrid.from_state(base64.b64decode(start.init_state), "")
            assert [grown.tokens[r * 12 + c] for r in range(8) for c in range(8)] == list(
                old.tokens
            )
            assert spec.edit.free_b64 is not None
            fresh = unpack_free(spec.edit.free_b64, 8 * 12)
            assert [i for i, new in enumerate(fresh) if new] == [
                r * 12 + c for r in range(8) for c in range(8, 12)
            ]
            running = await wait_for_card(fake, 2, "")
            assert "Pan right of job 1" in text_of(running)
            # The wider picture can be made square: 96x96, the picture in the middle.
            workers.finish(2, spec.iterations, state=start.init_state)
            wide = await wait_for_card(fake, 2, "Finished")
            assert "draw:square:2" in custom_ids(wide)
            assert wide.message_id is not None
            said = await fake.reply_to(await fake.click(ALICE, wide.message_id, "draw:square:2"))
            assert said == "Growing the picture as job 3."
            square = await workers.next_job(3)
            assert (square.spec.width, square.spec.height) == (96, 96)
            assert square.init_state is not None
            squared = TokenGrid.from_state(base64.b64decode(square.init_state), "")
            assert squared.tokens[2 * 12 : 10 * 12] == grown.tokens
            assert "Make Square of job 2" in text_of(await wait_for_card(fake, 3, ""))

    run(scenario())


def test_zoom_out_and_upscale_make_jobs_naming_their_parent_and_upscale_subtle_draws_nothing(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=2) as (
            fake,
            running,
            _,
            workers,
        ):
            picture = encoded(noise(64, 64), "PNG")
            card, _, state = await drawn_grid(fake, workers, 1, 64, seed=3, picture=picture)
            # Zoom Out 2x: the worker makes the middle's tokens from the picture's own.
            said = await fake.reply_to(await fake.click(ALICE, card, "draw:zoom2:1"))
            assert said == "Zooming out as job 2."
            zoom = await workers.next_job(2)
            assert (zoom.spec.width, zoom.spec.height) == (64, 64)
            assert zoom.spec.edit is not None
            assert (zoom.spec.edit.kind, zoom.spec.edit.factor) == ("zoom", 2.0)
            assert zoom.spec.parent == ParentJob(id=1, how="edit")
            assert zoom.init_state == state
            assert zoom.spec.iterations == edit_iterations("zoom", FULL)
            shown = text_of(await wait_for_card(fake, 2, ""))
            assert "Zoom Out 2x of job 1" in shown
            assert "the one lossy step" in shown
            # Upscale (Creative): a job at twice the size, from the same tokens.
            said = await fake.reply_to(await fake.click(ALICE, card, "draw:upcreative:1"))
            assert said == "Upscaling it as job 3."
            bigger = await workers.next_job(3)
            assert (bigger.spec.width, bigger.spec.height) == (128, 128)
            assert bigger.spec.edit is not None
            assert bigger.spec.edit.kind == "upscale"
            assert bigger.init_state == state
            assert bigger.spec.iterations == edit_iterations("upscale", FULL)
            assert "Upscale (Creative) of job 1" in text_of(await wait_for_card(fake, 3, ""))
            # Upscale (Subtle) draws nothing: the picture comes back at once, twice the size.
            assert await fake.reply_to(await fake.click(BOB, card, "draw:upsubtle:1")) == NOT_YOURS
            since = len(fake.events)
            pressed = await fake.click(ALICE, card, "draw:upsubtle:1")
            first = await answered(fake, pressed)
            assert first["type"] == 5
            assert not first.get("data", {}).get("flags", 0) & EPHEMERAL  # in the channel
            answer = await fake.answer(pressed)
            assert answer["content"] == (
                "Upscale (Subtle) of job 1: twice the size with the Lanczos filter; nothing was "
                "drawn."
            )
            [posted] = [e for e in fake.events[since:] if e.kind == "original"]
            with (
                Image.open(io.BytesIO(posted.files["pseudo-dalle-1-upscaled.png"])) as got,
                Image.open(io.BytesIO(picture)) as original,
            ):
                assert got.size == (128, 128)
                assert json.loads(got.info[EDIT_KEY]) == {"kind": "upscale", "method": "lanczos"}
                expected = original.convert("RGB").resize((128, 128), Image.Resampling.LANCZOS)
                assert got.convert("RGB").tobytes() == expected.tobytes()
            assert running.store.job(4) is None

    run(scenario())


def test_a_pan_past_the_largest_side_or_the_workers_memory_is_refused_in_the_members_language(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=2) as (
            fake,
            running,
            _,
            workers,
        ):
            card, _, _ = await drawn_grid(fake, workers, 1, 512, member=YUKI, seed=2)
            refused = await fake.reply_to(await fake.click(YUKI, card, "draw:left:1"))
            assert refused.startswith("この画像は 768x512 ピクセルです。")
            refused = await fake.reply_to(await fake.click(YUKI, card, "draw:upcreative:1"))
            assert refused.startswith("この画像は 1024x1024 ピクセルです。")
            assert running.store.job(2) is None
            # A pan within the largest side that its worker's memory cannot hold: the worker
            # refuses it, and the card says why in the member's language.
            card, _, _ = await drawn_grid(fake, workers, 2, 256, member=YUKI, seed=4)
            assert "ジョブ 3" in await fake.reply_to(await fake.click(YUKI, card, "draw:right:2"))
            await workers.next_job(3)
            values: dict[str, str | int] = {
                "width": 384,
                "height": 256,
                "need": "4.1",
                "room": "3.0",
            }
            workers.fail(3, JOB_TOO_BIG.code, values)
            failed = text_of(await wait_for_card(fake, 3, "Could not draw this"))
            assert "needs about 4.1 GiB of memory, and its worker has 3.0 GiB" in failed
            assert "この絵は 384x256 ピクセルで約 4.1 GiB のメモリーが必要ですが" in failed

    run(scenario())


def test_a_seamless_tile_is_drawn_shown_2x2_and_stays_a_tile_when_edited(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=4) as (
            fake,
            _,
            _,
            workers,
        ):
            asked = await fake.command(ALICE, "draw", prompt="a brick wall", size=64, tile=True)
            assert "Queued as job 1" in await fake.reply_to(asked)
            assert (await workers.next_job(1)).spec.tile == "xy"
            picture = encoded(noise(64, 64), "PNG")
            workers.finish(1, FULL, picture=picture)
            final = await wait_for_card(fake, 1, "Finished")
            assert "Seamless tile" in text_of(final)
            with Image.open(io.BytesIO(final.files["pseudo-dalle-1-tiled.png"])) as wall:
                assert wall.size == (128, 128)
                with Image.open(io.BytesIO(picture)) as tile:
                    corner = wall.crop((64, 64, 128, 128)).convert("RGB")
                    assert corner.tobytes() == tile.convert("RGB").tobytes()
            assert final.message_id is not None
            await fake.reply_to(await fake.click(ALICE, final.message_id, "draw:subtle:1"))
            assert (await workers.next_job(2)).spec.tile == "xy"
            await fake.reply_to(await fake.click(ALICE, final.message_id, "draw:reroll:1"))
            assert (await workers.next_job(3)).spec.tile == "xy"
            # An ordinary drawing is no tile, and its card shows one picture.
            asked = await fake.command(BOB, "draw", prompt="a brick wall", size=64)
            assert "Queued as job 4" in await fake.reply_to(asked)
            assert (await workers.next_job(4)).spec.tile == ""
            workers.finish(4, FULL)
            plain = await wait_for_card(fake, 4, "Finished")
            assert list(plain.files) == ["pseudo-dalle-4.png"]
            assert "Seamless tile" not in text_of(plain)

    run(scenario())
