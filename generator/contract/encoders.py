"""Which text encoder reads a prompt, and how long a prompt each one reads: the names, the known
multilingual encoders' files, token limits and fetching them. Imports no torch: the bot counts
a prompt's tokens with this before a job is queued; the encoders themselves load in
`generator.models.text_encoders`.

OpenAI's CLIP text encoder was trained on English; its tokenizer splits Japanese into byte
fragments. Multilingual encoders were trained to put a sentence in 50+ languages where CLIP's
text encoder puts its English translation. Two kinds are known (an optional install:
`pip install 'pseudo-dalle[multilingual]'`): sentence-transformers' distilled encoders
(clip-ViT-B-32-multilingual-v1) and M-CLIP's XLM-RoBERTa encoders.

Known encoders are fetched by the weights manager (`generator.contract.weights`: cache, SHA-256
where pinned, the ``$HF_ENDPOINT`` mirror, offline mode) into ``<cache>/text/<name>``; a local
folder in either layout works too. Prompt lengths are counted with the encoder's own tokenizer
through the `tokenizers` library, which needs no torch, so the bot refuses a long prompt at once.

Which encoder draws a prompt: "clip", "multilingual", or "auto": CLIP when every part of the
prompt is plain ASCII (English, as far as a character test can tell), else the multilingual one.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.contract.errors import ModelLoadError, PromptError, SettingsError
from generator.contract.prompts import WeightedPrompt
from generator.contract.reasons import PROMPT_TOO_LONG_FOR_MULTILINGUAL
from generator.contract.settings import TEXT_ENCODERS
from generator.contract.tokens import shorten
from generator.contract.weights import HubFile, ensure_hub_files

TEXT_ENCODER_CHOICES = (*TEXT_ENCODERS, "auto")
SENTENCE_TRANSFORMERS = "sentence-transformers"
M_CLIP = "M-CLIP"
# What counting tokens needs (the bot fetches only these): the tokenizer and the token limit,
# sentence-transformers' max_seq_length or the tokenizer's model_max_length, whichever is less.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "sentence_bert_config.json")


@dataclass(frozen=True)
class MultilingualSpec:
    kind: str  # SENTENCE_TRANSFORMERS or M_CLIP
    clip: str  # the CLIP whose text space it was trained to match
    size: str  # download size, for the README and logs
    files: tuple[HubFile, ...]


def _sentence_transformers_files() -> tuple[HubFile, ...]:
    # Pinned commit; SHA-256 for the files whose hashes could be read without Hugging Face
    # itself (several projects pin the same commit); the others are pinned by the commit only.
    repo, commit = (
        "sentence-transformers/clip-ViT-B-32-multilingual-v1",
        ("58edf8cada9e398793dca955574a48cbb7f18be2"),
    )
    hashes = {
        "tokenizer.json": "5b4e1a8171c81dfd666ae40265b9530c6e0b3d53923fe8ac493dcc84229adf81",
        "vocab.txt": "fe0fda7c425b48c516fc8f160d594c8022a0808447475c1a7c6d6479763f310c",
        "2_Dense/model.safetensors": (
            "d12568dc7300970a4d3dbb49068ad16cd89b99840b74b026f8e48071e9414f74"
        ),
    }
    paths = (
        "modules.json",
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "1_Pooling/config.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
    )
    return tuple(HubFile(repo, commit, path, hashes.get(path)) for path in paths)


def _m_clip_files(repo: str) -> tuple[HubFile, ...]:
    # M-CLIP's repositories and the base model's config, pinned by branch only: their commits
    # and hashes could not be read from here. The base model's config goes to base/config.json.
    files = (
        "config.json",
        "pytorch_model.bin",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    )
    base = HubFile("FacebookAI/xlm-roberta-large", "main", "config.json", None, "base/config.json")
    return (*(HubFile(repo, "main", path) for path in files), base)


MULTILINGUAL_MODELS = {
    "clip-ViT-B-32-multilingual-v1": MultilingualSpec(
        SENTENCE_TRANSFORMERS, "ViT-B/32", "about 540 MB", _sentence_transformers_files()
    ),
    "XLM-Roberta-Large-Vit-B-32": MultilingualSpec(
        M_CLIP, "ViT-B/32", "about 2.2 GB", _m_clip_files("M-CLIP/XLM-Roberta-Large-Vit-B-32")
    ),
    "XLM-Roberta-Large-Vit-L-14": MultilingualSpec(
        M_CLIP, "ViT-L/14", "about 2.2 GB", _m_clip_files("M-CLIP/XLM-Roberta-Large-Vit-L-14")
    ),
}
DEFAULT_MULTILINGUAL = "clip-ViT-B-32-multilingual-v1"


def choose_encoder(choice: str, prompts: tuple[WeightedPrompt, ...]) -> str:
    """The encoder that draws `prompts`: `choice`, or for "auto" CLIP when all is ASCII."""
    if choice not in TEXT_ENCODER_CHOICES:
        raise SettingsError(
            f"text encoder must be one of {', '.join(TEXT_ENCODER_CHOICES)}, got {choice!r}"
        )
    if choice != "auto":
        return choice
    return "clip" if all(p.text.isascii() for p in prompts) else "multilingual"


class PromptLimit:
    """How many tokens a multilingual encoder reads, counted with its own tokenizer."""

    def __init__(self, tokenizer: Any, most: int) -> None:
        self.tokenizer = tokenizer
        self.most = most

    def count(self, text: str) -> int:
        """Tokens the encoder reads for `text`, its special tokens included."""
        return len(self.tokenizer.encode(text).ids)

    def check(self, prompts: tuple[WeightedPrompt, ...]) -> None:
        """PromptError when a part is longer than the encoder reads."""
        for prompt in prompts:
            if self.count(prompt.text) > self.most:
                raise PromptError(
                    PROMPT_TOO_LONG_FOR_MULTILINGUAL,
                    part=shorten(prompt.text),
                    most=self.most,
                )


def read_prompt_limit(folder: Path) -> PromptLimit:
    """The token limit of the encoder saved in `folder` (either layout)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ModelLoadError(EXTRA_NEEDED) from None
    limits = [
        read_json(folder / name).get(key)
        for name, key in (
            ("sentence_bert_config.json", "max_seq_length"),
            ("tokenizer_config.json", "model_max_length"),
        )
        if (folder / name).is_file()
    ]
    sane = [n for n in limits if isinstance(n, int) and 0 < n < 100_000]
    if not sane:
        raise ModelLoadError(f"{folder} gives no token limit (tokenizer_config.json)")
    try:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as error:  # tokenizers raises plain Exception for unreadable files
        raise ModelLoadError(f"cannot read the tokenizer in {folder}: {error}") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return PromptLimit(tokenizer, min(sane))


def prompt_limit(name_or_path: str, cache_dir: Path, *, offline: bool) -> PromptLimit:
    """The token limit of a multilingual encoder, fetching only its tokenizer's files."""
    spec = MULTILINGUAL_MODELS.get(name_or_path)
    if spec is None:
        return read_prompt_limit(_local_folder(name_or_path))
    needed = tuple(f for f in spec.files if f.path in _TOKENIZER_FILES)
    folder = ensure_hub_files(
        f"{name_or_path} tokenizer",
        f"text/{name_or_path}",
        needed,
        cache_dir,
        offline=offline,
        progress=False,
    )
    return read_prompt_limit(folder)


EXTRA_NEEDED = (
    "the multilingual text encoder needs sentence-transformers and transformers: "
    "pip install 'pseudo-dalle[multilingual]'"
)


def encoder_folder(
    name_or_path: str, cache_dir: Path, *, offline: bool, progress: bool = True
) -> Path:
    """The folder holding the encoder: a local one, or a known one fetched into the cache."""
    spec = MULTILINGUAL_MODELS.get(name_or_path)
    if spec is None:
        return _local_folder(name_or_path)
    folder = cache_dir / f"text/{name_or_path}"
    if progress and not offline and not all((folder / f.stored).is_file() for f in spec.files):
        print(
            f"fetching the multilingual text encoder {name_or_path} ({spec.size}) into {folder}",
            file=sys.stderr,
        )
    return ensure_hub_files(
        name_or_path,
        f"text/{name_or_path}",
        spec.files,
        cache_dir,
        offline=offline,
        progress=progress,
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    return data


def _local_folder(name_or_path: str) -> Path:
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        known = ", ".join(MULTILINGUAL_MODELS)
        raise ModelLoadError(
            f"{name_or_path}: not a known multilingual encoder ({known}) nor a folder"
        )
    return folder
