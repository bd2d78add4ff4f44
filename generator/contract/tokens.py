"""Prompt length checks with CLIP's own tokenizer, without importing torch.

Importing ``clip.simple_tokenizer`` the usual way runs ``clip/__init__``, which imports torch;
the bot process must stay free of torch, so the tokenizer's file is loaded on its own.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from generator.contract.errors import PromptError
from generator.contract.prompts import WeightedPrompt
from generator.contract.reasons import PROMPT_TOO_LONG_FOR_CLIP

# Every OpenAI CLIP reads 77 tokens: a start token, 75 of text, an end token.
CONTEXT_LENGTH = 77


@cache
def _tokenizer() -> Any:
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the clip package (clip-anytorch) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "simple_tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("_pseudo_dalle_clip_tokenizer", path)
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer()


def token_count(text: str) -> int:
    """Tokens CLIP reads for `text`, start and end tokens included."""
    return len(_tokenizer().encode(text)) + 2


def check_lengths(prompts: tuple[WeightedPrompt, ...]) -> None:
    """PromptError when a prompt part is longer than CLIP can read."""
    for prompt in prompts:
        if token_count(prompt.text) > CONTEXT_LENGTH:
            raise PromptError(
                PROMPT_TOO_LONG_FOR_CLIP,
                part=shorten(prompt.text),
                most=CONTEXT_LENGTH - 2,
            )


def shorten(text: str, most: int = 40) -> str:
    """`text`, cut to `most` characters with an ellipsis, to quote it in a message."""
    return text if len(text) <= most else text[: most - 1] + "…"
