"""The multilingual text encoders, loaded: prompts in 50+ languages embedded into CLIP's text
space (names, limits and fetching are in `generator.contract.encoders`).

Two kinds load here, each with the library made for it:

- sentence-transformers' distilled encoders (clip-ViT-B-32-multilingual-v1), a DistilBERT with
  mean pooling and a projection, loaded by sentence-transformers;
- M-CLIP's XLM-RoBERTa encoders (Multilingual-CLIP): a transformers model whose token states are
  mean-pooled and mapped by one linear layer. Its package builds the transformer by downloading
  the base model's weights first; here the base model's config is enough, built by transformers
  and filled from the M-CLIP file, which is read without running code from it.

They are an approximation of CLIP's text space, not CLIP itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator.contract.encoders import (
    EXTRA_NEEDED,
    M_CLIP,
    MULTILINGUAL_MODELS,
    SENTENCE_TRANSFORMERS,
    PromptLimit,
    encoder_folder,
    read_json,
    read_prompt_limit,
)
from generator.contract.errors import ModelLoadError
from generator.contract.prompts import WeightedPrompt

if TYPE_CHECKING:
    import torch


class MultilingualEncoder(ABC):
    """A multilingual encoder whose embeddings live in a CLIP's text space."""

    def __init__(self, name: str, limit: PromptLimit, device: torch.device) -> None:
        self.name = name
        self.limit = limit
        self.device = device

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Width of its embeddings."""

    @property
    def max_tokens(self) -> int:
        return self.limit.most

    def token_count(self, text: str) -> int:
        return self.limit.count(text)

    def encode(self, prompts: tuple[WeightedPrompt, ...]) -> torch.Tensor:
        """Unit embeddings (N, D) of the prompts' texts, on the encoder's device."""
        self.limit.check(prompts)
        import torch

        with torch.no_grad():
            embeddings = self._embed([p.text for p in prompts])
        return torch.nn.functional.normalize(embeddings.float(), dim=-1)

    @abstractmethod
    def _embed(self, texts: list[str]) -> torch.Tensor:
        """Embeddings (N, D) of `texts`, not yet normalised."""


class SentenceTransformerEncoder(MultilingualEncoder):
    """clip-ViT-B-32-multilingual-v1 and other sentence-transformers models."""

    def __init__(self, model: Any, name: str, limit: PromptLimit, device: torch.device) -> None:
        super().__init__(name, limit, device)
        self.model = model

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _embed(self, texts: list[str]) -> torch.Tensor:
        embeddings: torch.Tensor = self.model.encode(
            texts, convert_to_tensor=True, device=str(self.device)
        )
        return embeddings


class MClipEncoder(MultilingualEncoder):
    """An M-CLIP encoder: transformer, attention-masked mean of its token states, linear map."""

    def __init__(
        self,
        transformer: Any,
        tokenizer: Any,
        head: torch.nn.Linear,
        *,
        name: str,
        limit: PromptLimit,
        device: torch.device,
    ) -> None:
        super().__init__(name, limit, device)
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.head = head

    @property
    def dimension(self) -> int:
        return int(self.head.out_features)

    def _embed(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
        states = self.transformer(**tokens)[0]
        mask = tokens["attention_mask"].unsqueeze(2).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1)
        result: torch.Tensor = self.head(pooled)
        return result


def load_multilingual(
    name_or_path: str,
    *,
    clip_dim: int,
    clip_name: str | None,
    device: torch.device,
    cache_dir: Path,
    offline: bool,
) -> MultilingualEncoder:
    """Load a multilingual encoder and check that it speaks the loaded CLIP's text space."""
    spec = MULTILINGUAL_MODELS.get(name_or_path)
    if spec is not None and clip_name is not None and clip_name != spec.clip:
        fitting = [name for name, other in MULTILINGUAL_MODELS.items() if other.clip == clip_name]
        instead = f", the multilingual encoder {' or '.join(fitting)}" if fitting else ""
        raise ModelLoadError(
            f"the multilingual encoder {name_or_path} maps into the text space of CLIP "
            f"{spec.clip}, not {clip_name}: use CLIP {spec.clip} with it{instead}, or the "
            "CLIP text encoder"
        )
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ModelLoadError(EXTRA_NEEDED) from None
    folder = encoder_folder(name_or_path, cache_dir, offline=offline)
    if _kind(folder) == M_CLIP:
        encoder = _load_m_clip(folder, name_or_path, device)
    else:
        encoder = _load_sentence_transformer(folder, name_or_path, device)
    if encoder.dimension != clip_dim:
        raise ModelLoadError(
            f"the multilingual encoder {name_or_path} gives {encoder.dimension}-dimensional "
            f"embeddings but this CLIP's space has {clip_dim}: they do not match"
        )
    return encoder


def _load_sentence_transformer(
    folder: Path, name: str, device: torch.device
) -> MultilingualEncoder:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(str(folder), device=str(device))
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"{folder} is not a sentence-transformers model: {error}") from None
    return SentenceTransformerEncoder(model.eval(), name, read_prompt_limit(folder), device)


def _load_m_clip(folder: Path, name: str, device: torch.device) -> MultilingualEncoder:
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from generator.models.checkpoint import read_tensors

    config = read_json(folder / "config.json")
    try:
        width, dimension = int(config["transformerDimensions"]), int(config["numDims"])
        base = AutoConfig.from_pretrained(str(folder / "base"))
        tokenizer = AutoTokenizer.from_pretrained(str(folder), config=base)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(
            f"{folder} is not a complete M-CLIP model (config.json, tokenizer files, and the "
            f"base model's config in base/config.json): {error}"
        ) from None
    weights = next(
        (folder / f for f in ("model.safetensors", "pytorch_model.bin") if (folder / f).is_file()),
        None,
    )
    if weights is None:
        raise ModelLoadError(f"{folder} has no model.safetensors or pytorch_model.bin")
    tensors = read_tensors(weights)
    transformer = AutoModel.from_config(base)
    head = torch.nn.Linear(width, dimension)
    try:
        _fill(transformer, tensors, "transformer.")
        _fill(head, tensors, "LinearTransformation.")
    except (RuntimeError, ValueError) as error:
        raise ModelLoadError(f"{weights} does not fit the M-CLIP model it names: {error}") from None
    transformer = transformer.float().eval().to(device)
    head = head.float().eval().to(device)
    return MClipEncoder(
        transformer, tokenizer, head, name=name, limit=read_prompt_limit(folder), device=device
    )


def _fill(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Load the tensors under `prefix` into `module`; every parameter must be there. Position
    ids, a buffer older transformers versions saved, may be extra."""
    own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    result = module.load_state_dict(own, strict=False)
    extra = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    if result.missing_keys or extra:
        raise ValueError(f"missing {result.missing_keys[:3]}, unexpected {extra[:3]}")


def _kind(folder: Path) -> str:
    config = folder / "config.json"
    is_m_clip = config.is_file() and read_json(config).get("model_type") == M_CLIP
    return M_CLIP if is_m_clip else SENTENCE_TRANSFORMERS
