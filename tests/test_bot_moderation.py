"""Moderation of prompts in the real bot: the operator's terms, a server's `/moderation` terms
and its AutoMod keyword rules (served by the fake Discord, kept current by its gateway events)
refuse a prompt before anything is queued or fetched, on `/draw`, "Draw from this image",
Reroll and Continue, in the member's language; the workers are the test's puppets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config
from bot.front.automod import AutoModSync
from bot.front.cogs.draw_from_image import MENU_NAME
from bot.moderation.rules import KeywordRule

from .bot_harness import (
    Running,
    bot_with_puppets,
    custom_ids,
    run,
    start_bot,
    wait_for_card,
    write_config,
)
from .conftest import ModelFiles
from .fake_discord import ADMIN, ALICE, BOB, DAVE, GUILD_ID, TRUSTED, YUKI, FakeDiscord, Member
from .fake_workers import FakeWorkers
from .pictures import encoded, noise

pytestmark = pytest.mark.e2e

OPERATOR = 'blocked_terms = ["naked", "*porn*"]\nallowed_terms = ["pornstar"]'


def refused(term: str) -> str:
    return f"Your prompt says “{term}”, which is not allowed on this server. Nothing was queued."


async def draw(fake: FakeDiscord, prompt: str, member: Member = ALICE) -> str:
    return await fake.reply_to(await fake.command(member, "draw", prompt=prompt))


async def moderate(
    fake: FakeDiscord, subcommand: str, member: Member = ADMIN, **options: Any
) -> str:
    asked = await fake.command(member, "moderation", subcommand=subcommand, **options)
    return await fake.reply_to(asked)


def test_the_operators_and_the_servers_terms_refuse_a_prompt_before_it_is_queued(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(
            tmp_path, model_files, joined_places=1, moderation=OPERATOR
        ) as (fake, running, _, _):
            assert await draw(fake, "a n4k3d giant") == refused("n4k3d")
            assert await draw(fake, "a PORNO magazine") == refused("porno")
            assert "Queued as job 1" in await draw(fake, "a famous pornstar's portrait")
            # The negative part steers away from the blocked term: that is allowed.
            assert "Queued as job 2" in await draw(fake, "a statue | naked:-1", member=BOB)
            assert "Manage Server" in await moderate(fake, "block", member=ALICE, term="clown")
            said = await moderate(fake, "block", term="clown*")
            assert said == "Prompts that say “clown*” are refused from now on."
            assert await moderate(fake, "block", term="clown*") == "“clown*” is blocked already."
            assert await moderate(fake, "block", term="**") == (
                "A term needs letters, not only wildcards."
            )
            assert await draw(fake, "two c.l.o.w.n.s", member=BOB) == refused("clowns")
            japanese = await draw(fake, "ピエロと CLOWN", member=YUKI)
            assert japanese == (
                "プロンプトの「clown」はこのサーバーでは使えません。順番待ちには入れていません。"
            )
            listed = await moderate(fake, "list")
            assert "Blocked on this server: `clown*`" in listed
            assert "Blocked by the bot's operator on every server: 2 term(s)" in listed
            assert await moderate(fake, "unblock", term="clown*") == (
                "“clown*” is no longer blocked here."
            )
            assert await moderate(fake, "unblock", term="clown*") == (
                "This server does not block “clown*”."
            )
            assert "Queued as job 3" in await draw(fake, "two clowns", member=BOB)
            assert running.store.active_count() == 3  # nothing refused was ever queued

    run(scenario())


def test_reroll_continue_and_draw_from_this_image_are_checked_too(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    lamp = encoded(noise(64, 48), "PNG")

    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=1) as (
            fake,
            _,
            _,
            workers,
        ):
            assert "job 1" in await draw(fake, "a lighthouse")
            await workers.next_job(1)
            workers.finish(1, 20)
            final = await wait_for_card(fake, 1, "Finished")
            assert custom_ids(final)[:2] == ["draw:reroll:1", "draw:continue:1"]
            await moderate(fake, "block", term="lighthouse")
            for button in ("draw:reroll:1", "draw:continue:1"):
                pressed = await fake.click(ALICE, final.message_id or 0, button)
                assert await fake.reply_to(pressed) == refused("lighthouse")
            attachment = fake.attachment("lamp.png", lamp, "image/png", width=64, height=48)
            message = await fake.post(BOB, "a photo", [attachment])
            opened = await fake.context_menu(ALICE, MENU_NAME, message)
            sent = await fake.submit(ALICE, opened, prompt="a lighthouse at night", use="both")
            assert await fake.reply_to(sent) == refused("lighthouse")
            assert fake.hits(attachment) == 0  # refused before the picture was fetched
            assert list(workers.dispatched) == [1]

    run(scenario())


def automod_of(running: Running) -> list[KeywordRule]:
    """The AutoMod keyword rules the bot applies to the fake Discord's guild now."""
    sync = running.app.bot.get_cog("AutoModSync")
    assert isinstance(sync, AutoModSync)
    return sync.rules.of(GUILD_ID)


async def until(check: Callable[[], bool], timeout: float = 5) -> None:
    """Until `check()` holds (a gateway event takes a moment to arrive)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def test_the_servers_automod_keyword_rules_apply_and_stay_current_without_a_restart(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, joined_places=2) as (fake, bot, _, _):
            rule = fake.automod_rule(("spider*",), allowed=("spiderman",), exempt_roles=(TRUSTED,))
            await fake.set_automod_rule(rule)
            await until(lambda: len(automod_of(bot)) == 1)
            assert await draw(fake, "three spiders") == refused("spiders")
            assert "Queued as job 1" in await draw(fake, "spiderman swings")
            assert "Queued as job 2" in await draw(fake, "three spiders", member=DAVE)  # exempt
            changed = fake.automod_rule(
                ("wasp",), patterns=(r"\bbee+s?\b",), rule_id=int(rule["id"])
            )
            await fake.set_automod_rule(changed)
            await until(lambda: automod_of(bot)[0].keywords == ("wasp",))
            assert await draw(fake, "a wasp nest", member=BOB) == refused("wasp")
            assert await draw(fake, "many BEEES", member=BOB) == refused("BEEES")
            assert "Queued as job 3" in await draw(fake, "three spiders", member=BOB)
            assert "AutoMod keyword rules: 1 applied to prompts" in await moderate(fake, "list")
            assert await moderate(fake, "automod", apply=False) == (
                "This server's AutoMod keyword rules no longer apply to prompts."
            )
            assert "Queued as job 4" in await draw(fake, "a wasp nest")
            await moderate(fake, "automod", apply=True)
            await fake.delete_automod_rule(int(rule["id"]))
            await until(lambda: automod_of(bot) == [])
            assert "Queued as job 5" in await draw(fake, "a wasp", member=ADMIN)

    run(scenario())


def test_rules_listed_at_start_apply_and_unreadable_ones_are_said(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        fake = FakeDiscord()
        fake.automod_rules[5] = fake.automod_rule(("moth",), rule_id=5)
        fake.automod_rules[6] = fake.automod_rule(("wolf",), rule_id=6, enabled=False)
        await fake.start()
        config = load_config(write_config(tmp_path, fake, model_files), environ={})
        bot = await start_bot(config, fake, FakeWorkers())
        try:
            await until(lambda: len(automod_of(bot)) == 1)
            assert await draw(fake, "a moth") == refused("moth")
            assert "Queued" in await draw(fake, "a wolf")  # its rule is disabled
            fake.automod_readable = False
            sync, guild = bot.app.bot.get_cog("AutoModSync"), bot.app.bot.get_guild(GUILD_ID)
            assert isinstance(sync, AutoModSync)
            assert guild is not None
            await sync.load(guild)  # as when the bot next sees the server
            assert "the bot cannot read them" in await moderate(fake, "list")
            assert "Queued" in await draw(fake, "a moth", member=BOB)
        finally:
            await bot.stop()
            await fake.stop()

    run(scenario())
