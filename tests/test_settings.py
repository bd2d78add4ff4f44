"""Settings and prompts are validated on construction with messages a person can act on."""

from __future__ import annotations

import pytest

from generator.contract.errors import PromptError, SettingsError
from generator.contract.prompts import WeightedPrompt, clean_text, parse_prompts
from generator.contract.settings import DrawSettings, Job


def test_parse_weighted_prompts() -> None:
    assert parse_prompts("a red sky:1 | blurry, watermark:-0.5") == (
        WeightedPrompt("a red sky", 1.0),
        WeightedPrompt("blurry, watermark", -0.5),
    )
    assert parse_prompts("time: 3pm") == (WeightedPrompt("time: 3pm", 1.0),)
    assert parse_prompts("  an image\tof the\nmusic ") == (WeightedPrompt("an image of the music"),)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "prompt is empty"),
        ("   \n\t", "prompt is empty"),
        ("a cat |", "empty part"),
        (":2", "has a weight but no text"),
        ("a cat:-1", "positive weight"),
        ("a cat:nan", "finite"),
        ("x" * 1001, "too long"),
    ],
)
def test_bad_prompts(spec: str, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        parse_prompts(spec)


def test_control_characters_are_stripped() -> None:
    assert clean_text("a\x00cat\x1b[31m red\u202e") == "a cat [31m red"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 500}, "width must be a multiple of 8 from 64 to 1024, got 500"),
        ({"height": 2048}, "height must be"),
        ({"cutouts": 0}, "cutouts must be"),
        ({"lr": float("nan")}, "lr must be"),
        ({"temperature": 0}, "temperature must be"),
        ({"cut_size_min": 0.9, "cut_size_max": 0.5}, "cut sizes"),
        ({"rotation_degrees": 90}, "rotation_degrees"),
        ({"precision": "int8"}, "precision must be one of fp32, bf16, fp16"),
    ],
)
def test_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        DrawSettings(**kwargs)  # type: ignore[arg-type]


def test_bad_jobs() -> None:
    with pytest.raises(SettingsError, match="iterations must be from 1"):
        Job("a cat", 1, 0)
    with pytest.raises(SettingsError, match="seed must be from 0"):
        Job("a cat", -1, 10)
    with pytest.raises(PromptError):
        Job(" ", 1, 10)


def test_temperature_schedule() -> None:
    fixed = DrawSettings()
    assert fixed.temperature_at(0, 100) == fixed.temperature_at(99, 100) == 1.0
    annealed = DrawSettings(temperature=2.0, temperature_end=0.5)
    assert annealed.temperature_at(0, 100) == pytest.approx(2.0)
    assert annealed.temperature_at(99, 100) == pytest.approx(0.5)
    assert annealed.temperature_at(0, 1) == 2.0
    assert DrawSettings(width=96, height=64).token_grid == (8, 12)


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("👩\u200d💻 at work", "👩\u200d💻 at work"),  # ZWJ emoji: woman technologist
        ("👨\u200d👩\u200d👧 family", "👨\u200d👩\u200d👧 family"),
        ("می\u200cخواهم", "می\u200cخواهم"),  # Persian: ZWNJ keeps the letters apart
        ("「夕焼け」、海。", "「夕焼け」、海。"),  # Japanese full-width punctuation, as typed
        ("a cat, 猫, кошка, قطة", "a cat, 猫, кошка, قطة"),  # mixed scripts
        (
            "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f flag",
            "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f flag",
        ),  # Scotland
        ("co\u00adop\u202eexe", "coopexe"),  # soft hyphen, right-to-left override: dropped
        ("x\U000e0041y \ue000z", "xy z"),  # a stray tag, private use: dropped
        ("\u200dstart end\u200c", "start end"),  # a joiner at a word's edge joins nothing
        ("a\u3000b\u00a0c", "a b c"),  # ideographic and no-break spaces
    ],
)
def test_the_cleaner_keeps_what_every_script_needs(typed: str, kept: str) -> None:
    assert clean_text(typed) == kept


def test_full_width_separators_and_weights() -> None:
    assert parse_prompts("夕焼け：１｜ぼやけた：－０．５") == (
        WeightedPrompt("夕焼け", 1.0),
        WeightedPrompt("ぼやけた", -0.5),
    )
    assert parse_prompts("時間：午後３時") == (WeightedPrompt("時間：午後３時", 1.0),)
    assert parse_prompts("a cat:2 ｜ 犬:0.5") == (
        WeightedPrompt("a cat", 2.0),
        WeightedPrompt("犬", 0.5),
    )


@pytest.mark.parametrize("spec", ["\x00\x01\x1b", "\u200d\u200c", "\u202e\u2066\ufeff", " \u3000 "])
def test_a_prompt_of_only_invisible_characters_is_refused(spec: str) -> None:
    with pytest.raises(PromptError, match="prompt is empty: describe what to draw"):
        parse_prompts(spec)
