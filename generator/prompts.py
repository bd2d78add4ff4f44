"""Weighted prompts: ``"a red sky:1 | blurry, watermark:-0.5"``.

Parts are separated by ``|``. A part may end in ``:weight`` (any float, negative to steer away
from it); without one its weight is 1. A colon that is not followed by a number is part of the
text, so ``"time: 3pm"`` is one prompt.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

from generator.errors import PromptError

MAX_PROMPT_CHARS = 1000


@dataclass(frozen=True)
class WeightedPrompt:
    text: str
    weight: float = 1.0


def clean_text(text: str) -> str:
    """Strip control characters and collapse whitespace."""
    kept = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return " ".join(kept.split())


def _split_weight(part: str) -> tuple[str, float]:
    text, sep, tail = part.rpartition(":")
    if sep:
        try:
            weight = float(tail)
        except ValueError:
            return part, 1.0
        if not math.isfinite(weight):
            raise PromptError(f"prompt weight must be a finite number, got {tail.strip()!r}")
        return text, weight
    return part, 1.0


def parse_prompts(spec: str) -> tuple[WeightedPrompt, ...]:
    """Parse a weighted prompt spec; raise PromptError with a short reason when it is unusable."""
    if len(spec) > MAX_PROMPT_CHARS:
        raise PromptError(
            f"prompt is too long ({len(spec)} characters, at most {MAX_PROMPT_CHARS})"
        )
    if not clean_text(spec):
        raise PromptError("prompt is empty: describe what to draw")
    prompts = []
    for raw in spec.split("|"):
        text, weight = _split_weight(raw)
        text = clean_text(text)
        if not text:
            if clean_text(raw):
                raise PromptError(f"prompt part {clean_text(raw)!r} has a weight but no text")
            raise PromptError("prompt has an empty part: remove the extra '|'")
        prompts.append(WeightedPrompt(text, weight))
    if not any(p.weight > 0 for p in prompts):
        raise PromptError("prompt needs at least one part with a positive weight")
    return tuple(prompts)
