"""Text encoders for prompts in other languages, mapping into CLIP's embedding space.

Imports no torch until an encoder is loaded, so the CLI can choose one before it loads anything.

OpenAI's CLIP text encoder was trained on English; its tokenizer splits Japanese into byte
fragments. Multilingual encoders were distilled to put a sentence in 50+ languages where CLIP's
text encoder puts its English translation, so the picture side (CLIP's image encoder) stays as
it is. They are an approximation of CLIP's text space, not CLIP itself.

They load with sentence-transformers, the library made for them (an optional install:
`pip install 'pseudo-dalle[multilingual]'`). Known encoders are fetched from Hugging Face into
`<cache>/huggingface` by huggingface_hub, which honours `HF_ENDPOINT` (a mirror) and, offline,
uses only what is cached; a local folder saved by sentence-transformers works too.

Which encoder draws a prompt: "clip", "multilingual", or "auto": CLIP when every part of the
prompt is plain ASCII (English, as far as a character test can tell), else the multilingual one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator.errors import ModelLoadError, PromptError, SettingsError
from generator.prompts import WeightedPrompt
from generator.settings import TEXT_ENCODERS

if TYPE_CHECKING:
    import torch

TEXT_ENCODER_CHOICES = (*TEXT_ENCODERS, "auto")


@dataclass(frozen=True)
class MultilingualSpec:
    repo: str
    clip: str  # the CLIP whose text space it was trained to match
    size: str  # download size, for the README and logs


MULTILINGUAL_MODELS = {
    "clip-ViT-B-32-multilingual-v1": MultilingualSpec(
        "sentence-transformers/clip-ViT-B-32-multilingual-v1", "ViT-B/32", "about 540 MB"
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


class MultilingualEncoder:
    """A sentence-transformers model whose embeddings live in a CLIP's text space."""

    def __init__(self, model: Any, name: str, device: torch.device) -> None:
        self.model = model
        self.name = name
        self.device = device

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def token_count(self, text: str) -> int:
        """Tokens the encoder reads for `text`, its special tokens included."""
        return len(self.model.tokenizer(text)["input_ids"])

    def encode(self, prompts: tuple[WeightedPrompt, ...]) -> torch.Tensor:
        """Unit embeddings (N, D) of the prompts' texts, on the encoder's device."""
        for prompt in prompts:
            if self.token_count(prompt.text) > self.max_tokens:
                shown = prompt.text if len(prompt.text) <= 40 else prompt.text[:39] + "…"
                raise PromptError(
                    f"prompt {shown!r} is too long for the multilingual text encoder, which "
                    f"reads at most {self.max_tokens} tokens; shorten it"
                )
        import torch

        with torch.no_grad():
            embeddings = self.model.encode(
                [p.text for p in prompts], convert_to_tensor=True, device=str(self.device)
            )
        return torch.nn.functional.normalize(embeddings.float(), dim=-1)


def load_multilingual(
    name_or_path: str, *, clip_dim: int, clip_name: str | None, device: torch.device,
    cache_dir: Path, offline: bool,
) -> MultilingualEncoder:  # fmt: skip
    """Load a multilingual encoder and check that it speaks the loaded CLIP's text space."""
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise ModelLoadError(
            "the multilingual text encoder needs sentence-transformers: "
            "pip install 'pseudo-dalle[multilingual]'"
        ) from None
    spec = MULTILINGUAL_MODELS.get(name_or_path)
    if spec is not None and clip_name is not None and clip_name != spec.clip:
        raise ModelLoadError(
            f"the multilingual encoder {name_or_path} maps into the text space of CLIP "
            f"{spec.clip}, not {clip_name}: use CLIP {spec.clip} with it, or --text-encoder clip"
        )
    folder = _folder(name_or_path, spec, cache_dir, offline)
    transformers_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(str(folder), device=str(device))
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"{folder} is not a sentence-transformers model: {error}") from None
    encoder = MultilingualEncoder(model.eval(), name_or_path, device)
    if encoder.dimension != clip_dim:
        raise ModelLoadError(
            f"the multilingual encoder {name_or_path} gives {encoder.dimension}-dimensional "
            f"embeddings but this CLIP's space has {clip_dim}: they do not match"
        )
    return encoder


def _folder(name_or_path: str, spec: MultilingualSpec | None, cache: Path, offline: bool) -> Path:
    if spec is None:
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            known = ", ".join(MULTILINGUAL_MODELS)
            raise ModelLoadError(
                f"{name_or_path}: not a known multilingual encoder ({known}) nor a folder"
            )
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                spec.repo, cache_dir=str(cache / "huggingface"), local_files_only=offline
            )
        )
    except LocalEntryNotFoundError:
        raise ModelLoadError(
            f"{name_or_path} is not in the cache at {cache} and downloads are off (--offline); "
            "run pseudo-dalle fetch-weights --text-encoder multilingual where there is internet"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        raise ModelLoadError(f"cannot download {spec.repo} ({spec.size}): {error}") from None
