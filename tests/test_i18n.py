"""The bot in the member's language: complete catalogs, and Japanese end to end."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bot.i18n import (
    LANGUAGES,
    SOURCE_LANGUAGE,
    catalog,
    language_of,
    notice,
    reason_notice,
    render_notice,
    tr,
)
from bot.ops.messages import all_messages, command_messages
from generator.contract.reasons import MISSING_MODEL, REASONS

from .bot_harness import run, running_bot, text_of, wait_for_job
from .conftest import ModelFiles
from .fake_discord import CHANNEL_ID, YUKI, Event, FakeDiscord, Member
from .fake_workers import FakeWorkers

TRANSLATED = [language for language in LANGUAGES if language != SOURCE_LANGUAGE]
# Discord's rule for command and option names (localised ones too).
NAME = re.compile(r"^[-_\w\u0900-\u097f\u0e00-\u0e7f]{1,32}$")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_has_a_translation_with_the_same_fields(language: str) -> None:
    messages = all_messages()
    assert "Queued as job {job}; its card is in this channel." in messages  # from the code
    described = (
        "Draw a picture from your words. It joins the queue and the card shows its progress."
    )
    assert described in messages  # a command's description
    untranslated = [m for m in messages if catalog(language).gettext(m) == m]
    assert untranslated == []
    for message in messages:
        assert _fields(tr(language, message)) == _fields(message), message


@pytest.mark.parametrize("language", TRANSLATED)
def test_translated_command_names_are_names_discord_takes(language: str) -> None:
    names = {m for m in command_messages() if NAME.match(m) and m == m.lower()}
    assert {"draw", "prompt", "max_iterations"} <= names
    for name in names:
        translated = tr(language, name)
        assert NAME.match(translated), translated
        assert translated == translated.lower()


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_reason_a_worker_or_the_intake_gives_has_a_translation(language: str) -> None:
    assert len(REASONS) >= 25
    untranslated = [
        code for code, reason in REASONS.items() if tr(language, reason.template) == reason.template
    ]
    assert untranslated == []
    stored = reason_notice(MISSING_MODEL, {"model": "RN50"})
    shown = render_notice(language, stored)
    assert "RN50" in shown
    assert shown != MISSING_MODEL.say(model="RN50")


def test_languages_notices_and_fallbacks() -> None:
    assert [language_of(x) for x in ("ja", "en-US", "en-GB", "fr", None)] == [
        "ja",
        "en",
        "en",
        "en",
        "en",
    ]
    stored = notice("Cancelled by <@{member}>.", member=42)
    assert render_notice("en", stored) == "Cancelled by <@42>."
    assert render_notice("ja", stored) == "<@42> がキャンセルしました。"
    assert render_notice("ja", "the worker hit an unexpected error") == (
        "ワーカーで予期しないエラーが起きました"
    )
    assert render_notice("ja", "a note from an earlier version") == "a note from an earlier version"


ALEX = Member(100000000000000012, "alex", locale="en-US")


def _cards(fake: FakeDiscord) -> list[Event]:
    return [
        e
        for e in fake.events
        if e.kind in ("create", "edit") and e.channel_id == CHANNEL_ID and e.payload.get("embeds")
    ]


@pytest.mark.e2e
def test_a_japanese_member_sees_japanese_and_an_english_one_english(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    async def scenario() -> None:
        workers = FakeWorkers()
        async with running_bot(tmp_path, model_files, guild_locale="ja", transport=workers) as (
            fake,
            running,
            config,
        ):
            workers.join(places=2, clip_models=(config.models.clip,))
            commands = {c["name"]: c for c in fake.commands}
            draw = commands["draw"]
            assert draw["name_localizations"]["ja"] == "描く"
            assert draw["description_localizations"]["ja"].startswith("言葉から絵を描きます")
            prompt = next(o for o in draw["options"] if o["name"] == "prompt")
            assert prompt["name_localizations"]["ja"] == "内容"
            assert "en-US" not in draw["description_localizations"]

            queued = await fake.reply_to(
                await fake.command(YUKI, "draw", prompt="夕焼けの海", iterations=4, size=64)
            )
            assert (
                queued == "ジョブ 1 として順番待ちに入りました。カードはこのチャンネルにあります。"
            )
            english = await fake.reply_to(
                await fake.command(ALEX, "draw", prompt="a sunset", iterations=4, size=64)
            )
            assert english == "Queued as job 2; its card is in this channel."
            refused = await fake.reply_to(await fake.command(ALEX, "drawconfig", max_size=64))
            assert refused == "You need the Manage Server permission to change drawing settings."
            help_ja = await fake.reply_to(await fake.command(YUKI, "help"))
            assert "このサーバーの制限" in help_ja
            for job_id in (1, 2):
                await workers.next_job(job_id)
                workers.finish(job_id, 4)
                await wait_for_job(running.store, job_id, lambda job: job.status == "done")
            finished = await fake.wait_for(
                lambda: [e for e in _cards(fake) if "完成 · ジョブ 2" in text_of(e)] or None
            )
            card = text_of(finished[-1])
            assert "依頼者" in card
            assert "4 回の反復" in card
            buttons = [
                c["label"] for row in finished[-1].payload["components"] for c in row["components"]
            ]
            assert buttons == [
                "描き直す",
                "続きを描く",
                "少し変える",
                "大きく変える",
                "一部を変える",
                "⬅",
                "➡",
                "⬆",
                "⬇",
                "ズームアウト 1.5倍",
                "ズームアウト 2倍",
                "拡大（控えめ）",
                "拡大（クリエイティブ）",
                "削除",
                "報告",
            ]

    run(scenario())
