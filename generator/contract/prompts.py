"""Weighted prompts: ``"a red sky:1 | blurry, watermark:-0.5"``, in any script.

Parts are separated by ``|``. A part may end in ``:weight`` (any float, negative to steer away
from it); without one its weight is 1. A colon that is not followed by a number is part of the
text, so ``"time: 3pm"`` is one prompt. The full-width forms that Japanese and Chinese keyboards
type, ``｜`` and ``：`` (and full-width digits in the weight), work the same:
``"夕焼け：１｜ぼやけた：－０．５"``.

Cleaning keeps every letter, mark and symbol as typed (no normalisation that would change the
text) and drops only what is unsafe or invisible: control characters, and formatting characters
such as bidirectional overrides (which can make text display differently from what it says),
except the zero-width joiner and non-joiner, which change how letters and emoji join (Persian
``می‌خواهم``, ``👩‍💻``), and the tag characters of emoji flag sequences.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

from generator.contract.errors import PromptError
from generator.contract.reasons import (
    PROMPT_EMPTY,
    PROMPT_EMPTY_PART,
    PROMPT_NOTHING_POSITIVE,
    PROMPT_TOO_MANY_CHARS,
    PROMPT_WEIGHT_NOT_FINITE,
    PROMPT_WEIGHT_WITHOUT_TEXT,
)

MAX_PROMPT_CHARS = 1000
PART_SEPARATORS = ("|", "｜")
WEIGHT_SEPARATORS = (":", "：")
JOINERS = "\u200c\u200d"  # zero-width non-joiner, zero-width joiner
BLACK_FLAG = "\U0001f3f4"  # starts an emoji tag sequence (subdivision flags)
TAGS = range(0xE0020, 0xE0080)  # tag characters, ending with CANCEL TAG (U+E007F)


@dataclass(frozen=True)
class WeightedPrompt:
    text: str
    weight: float = 1.0


def clean_text(text: str) -> str:
    """Drop formatting, private-use and unassigned characters (keeping joiners inside words
    and emoji flag tags), turn control characters and every kind of space into one plain
    space, and trim."""
    kept: list[str] = []
    in_flag = False
    for ch in text:
        in_flag = (in_flag and ord(ch) in TAGS) or ch == BLACK_FLAG
        category = unicodedata.category(ch)
        if category == "Cc" or category[0] == "Z":
            kept.append(" ")
        elif category[0] != "C" or ch in JOINERS or in_flag:
            kept.append(ch)
    # A joiner joins what is on both sides: at the edge of a word it joins nothing.
    words = (word.strip(JOINERS) for word in "".join(kept).split())
    return " ".join(word for word in words if word)


def _split_weight(part: str) -> tuple[str, float]:
    at = max(part.rfind(separator) for separator in WEIGHT_SEPARATORS)
    if at < 0:
        return part, 1.0
    text, tail = part[:at], part[at + 1 :]
    try:
        weight = float(unicodedata.normalize("NFKC", tail))
    except ValueError:
        return part, 1.0
    if not math.isfinite(weight):
        raise PromptError(PROMPT_WEIGHT_NOT_FINITE, weight=tail.strip())
    return text, weight


def _parts(spec: str) -> list[str]:
    for separator in PART_SEPARATORS[1:]:
        spec = spec.replace(separator, PART_SEPARATORS[0])
    return spec.split(PART_SEPARATORS[0])


def parse_prompts(spec: str) -> tuple[WeightedPrompt, ...]:
    """Parse a weighted prompt spec; raise PromptError with a short reason when it is unusable."""
    if len(spec) > MAX_PROMPT_CHARS:
        raise PromptError(PROMPT_TOO_MANY_CHARS, length=len(spec), most=MAX_PROMPT_CHARS)
    if not clean_text(spec):
        raise PromptError(PROMPT_EMPTY)
    prompts = []
    for raw in _parts(spec):
        text, weight = _split_weight(raw)
        text = clean_text(text)
        if not text:
            if clean_text(raw):
                raise PromptError(PROMPT_WEIGHT_WITHOUT_TEXT, part=clean_text(raw))
            raise PromptError(PROMPT_EMPTY_PART)
        prompts.append(WeightedPrompt(text, weight))
    if not any(p.weight > 0 for p in prompts):
        raise PromptError(PROMPT_NOTHING_POSITIVE)
    return tuple(prompts)
