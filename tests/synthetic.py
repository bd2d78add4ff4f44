"""Randomly initialised models written in the file formats users have, for tests and benchmarks.

``tiny`` models run in milliseconds on a CPU; ``full`` models have the real architectures
(CLIP ViT-B/32, the 8192-token decoder) with random weights, for timing without downloads.
Both load through the same loaders as OpenAI's files.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import torch

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip
    import clip.model
import dall_e

Size = Literal["tiny", "full"]
# "tiny-48" is a second tiny CLIP, for runs with several models: it takes 48x48 crops where
# "tiny" takes 32x32, and its embeddings are 24 wide where "tiny"'s are 32.
ClipSize = Literal["tiny", "tiny-48", "full", "full-B16", "full-RN50", "full-L14"]
ClipFormat = Literal["state_dict", "torchscript"]
DecoderFormat = Literal["pickle", "state_dict", "safetensors"]

# A tiny decoder's output convolution is so small that its image hardly depends on the latent.
TINY_OUTPUT_GAIN = 40.0


# CLIP's own constructor arguments; "full" is ViT-B/32, "full-B16" ViT-B/16, "full-RN50" RN50 and
# "full-L14" ViT-L/14 (for benchmarks and memory figures of the quality presets).
# `clip.model.build_model` infers the heads as widths // 64, so the widths stay multiples of 64.
_CLIP_SIZES: dict[ClipSize, dict[str, Any]] = {
    "tiny": {
        "embed_dim": 32,
        "image_resolution": 32,
        "vision_layers": 1,
        "vision_width": 64,
        "vision_patch_size": 16,
        "transformer_width": 64,
        "transformer_heads": 1,
        "transformer_layers": 1,
    },
    "tiny-48": {
        "embed_dim": 24,
        "image_resolution": 48,
        "vision_layers": 1,
        "vision_width": 64,
        "vision_patch_size": 16,
        "transformer_width": 64,
        "transformer_heads": 1,
        "transformer_layers": 1,
    },
    "full": {
        "embed_dim": 512,
        "image_resolution": 224,
        "vision_layers": 12,
        "vision_width": 768,
        "vision_patch_size": 32,
        "transformer_width": 512,
        "transformer_heads": 8,
        "transformer_layers": 12,
    },
    "full-B16": {
        "embed_dim": 512,
        "image_resolution": 224,
        "vision_layers": 12,
        "vision_width": 768,
        "vision_patch_size": 16,
        "transformer_width": 512,
        "transformer_heads": 8,
        "transformer_layers": 12,
    },
    "full-RN50": {
        "embed_dim": 1024,
        "image_resolution": 224,
        "vision_layers": (3, 4, 6, 3),
        "vision_width": 64,
        "vision_patch_size": None,
        "transformer_width": 512,
        "transformer_heads": 8,
        "transformer_layers": 12,
    },
    "full-L14": {
        "embed_dim": 768,
        "image_resolution": 224,
        "vision_layers": 24,
        "vision_width": 1024,
        "vision_patch_size": 14,
        "transformer_width": 768,
        "transformer_heads": 12,
        "transformer_layers": 12,
    },
}


def random_clip(size: ClipSize = "tiny", seed: int = 0) -> Any:
    """A CLIP with random weights; every size uses the real tokenizer's vocabulary and context."""
    torch.manual_seed(seed)
    model = clip.model.CLIP(context_length=77, vocab_size=49408, **_CLIP_SIZES[size])
    return model.eval()


def random_decoder(size: Size = "tiny", seed: int = 0) -> torch.nn.Module:
    """A `dall_e.Decoder` with random weights; the tiny one's output gain is raised."""
    torch.manual_seed(seed)
    if size == "tiny":
        decoder = dall_e.Decoder(n_init=32, n_hid=64, n_blk_per_group=1, vocab_size=512)
        with torch.no_grad():
            decoder.blocks.output.conv.w.mul_(TINY_OUTPUT_GAIN)
    else:
        decoder = dall_e.Decoder()
    module: torch.nn.Module = decoder.eval()
    return module


def random_encoder(size: Size = "tiny", seed: int = 0) -> torch.nn.Module:
    """A `dall_e.Encoder` with random weights and the decoder's vocabulary for that size."""
    torch.manual_seed(seed)
    if size == "tiny":
        encoder = dall_e.Encoder(n_hid=16, n_blk_per_group=1, vocab_size=512)
    else:
        encoder = dall_e.Encoder()
    module: torch.nn.Module = encoder.eval()
    return module


def write_clip(
    path: Path, size: ClipSize = "tiny", fmt: ClipFormat = "state_dict", seed: int = 0
) -> Path:
    """Save a random CLIP as a state dict or, like OpenAI's files, a traced TorchScript archive."""
    model = random_clip(size, seed)
    if fmt == "state_dict":
        torch.save(model.state_dict(), path)
    else:
        resolution = model.visual.input_resolution
        example = (torch.zeros(1, 3, resolution, resolution), clip.tokenize(["a picture"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(model, example).save(str(path))
    return path


def write_decoder(path: Path, size: Size = "tiny", fmt: DecoderFormat = "pickle") -> Path:
    """Save a random decoder pickled whole (as OpenAI's decoder.pkl is), as a state dict, or
    as safetensors."""
    decoder = random_decoder(size)
    if fmt == "pickle":
        torch.save(decoder, path)
    elif fmt == "state_dict":
        torch.save(decoder.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(path))
    return path


def write_encoder(path: Path, size: Size = "tiny", fmt: DecoderFormat = "pickle") -> Path:
    """Save a random encoder as OpenAI's encoder.pkl is (pickled whole), or as a state dict."""
    encoder = random_encoder(size)
    torch.save(encoder if fmt == "pickle" else encoder.state_dict(), path)
    return path


# Characters the tiny multilingual encoder's tokenizer knows, one token each (WordPiece splits
# Japanese into characters anyway); anything else is [UNK].
_TINY_VOCAB_TEXT = "abcdefghijklmnopqrstuvwxyz0123456789夕焼けの海猫犬空赤青い絵音楽、。"


def write_multilingual(folder: Path, dimension: int = 32, seed: int = 0) -> Path:
    """A random multilingual encoder saved as sentence-transformers saves one: a one-layer
    DistilBERT, mean pooling, and a projection into a `dimension`-wide CLIP text space, as in
    clip-ViT-B-32-multilingual-v1."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    torch.manual_seed(seed)
    base = folder / "base"
    base.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_TINY_VOCAB_TEXT]
    (base / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    DistilBertTokenizerFast(str(base / "vocab.txt"), do_lower_case=False).save_pretrained(base)
    config = DistilBertConfig(
        vocab_size=len(vocab),
        dim=32,
        n_layers=1,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=128,
    )
    DistilBertModel(config).save_pretrained(base)
    transformer = Transformer(str(base), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    dense = Dense(
        transformer.get_embedding_dimension(),
        dimension,
        bias=False,
        activation_function=torch.nn.Identity(),
    )
    target = folder / "encoder"
    SentenceTransformer(modules=[transformer, pooling, dense]).save(str(target))
    return target


def write_m_clip(folder: Path, dimension: int = 32, seed: int = 0) -> Path:
    """A random M-CLIP encoder saved as M-CLIP's repositories hold one (config.json naming the
    M-CLIP model type, a checkpoint with ``transformer.*`` and ``LinearTransformation.*``, the
    tokenizer's files), with its base model's config in ``base/config.json``: a one-layer
    XLM-RoBERTa with a Unigram tokenizer reading at most 64 tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(character, -2.0) for character in _TINY_VOCAB_TEXT]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    fast = XLMRobertaTokenizer(tokenizer_object=tokenizer, model_max_length=64)
    fast.save_pretrained(folder)
    base = XLMRobertaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    (folder / "base").mkdir(exist_ok=True)
    base.to_json_file(str(folder / "base" / "config.json"))
    transformer = XLMRobertaModel(base)
    head = torch.nn.Linear(32, dimension)
    state = {f"transformer.{k}": v for k, v in transformer.state_dict().items()}
    state |= {f"LinearTransformation.{k}": v for k, v in head.state_dict().items()}
    torch.save(state, folder / "pytorch_model.bin")
    config = {
        "model_type": "M-CLIP",
        "architectures": ["MultilingualCLIP"],
        "modelBase": "tiny",
        "transformerDimensions": 32,
        "numDims": dimension,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder
