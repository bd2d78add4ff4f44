"""Load CLIP (one model or several) and the DALL-E dVAE decoder from names, URLs or local files,
safely and loudly.

Both loaders read weights through `generator.models.checkpoint` (no code from a model file ever
runs) and infer the architecture from the weights' shapes, so the tiny models the tests build go
through exactly the code that loads OpenAI's real files.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from generator.contract.errors import ModelLoadError, SettingsError
from generator.contract.weights import (
    CLIP_WEIGHTS,
    DEFAULT_CLIP_MODEL,
    DEFAULT_DECODER_URL,
    DEFAULT_ENCODER_URL,
    decoder_spec,
    default_cache_dir,
    encoder_spec,
    ensure_weights,
    sha256_file,
)
from generator.models.checkpoint import read_tensors

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip
    import clip.model
import dall_e

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class DecoderShape:
    """The dVAE decoder's size, as `dall_e.Decoder` takes it."""

    n_init: int
    n_hid: int
    n_blk_per_group: int
    output_channels: int
    vocab_size: int


@dataclass(frozen=True)
class Models:
    """Frozen CLIP models (one or more, each loaded once) and the decoder on one device, ready
    for the engine. Every CLIP judges each step; `clip` is the first, for what takes one."""

    clips: tuple[Any, ...]
    clip_names: tuple[str, ...]  # as given: a known name or a file, one per model in `clips`
    decoder: nn.Module
    decoder_shape: DecoderShape
    device: torch.device
    # The SHA-256 of the decoder's file: a picture's token grid names the decoder that drew it
    # (`generator.contract.edits`), and only that decoder may edit it.
    decoder_sha256: str

    @property
    def vocab_size(self) -> int:
        return self.decoder_shape.vocab_size

    @property
    def clip(self) -> Any:
        return self.clips[0]

    @property
    def clip_resolution(self) -> int:
        return int(self.clip.visual.input_resolution)

    def only_clip(self) -> Any:
        """The one CLIP, for an encoder trained into a single CLIP's text space (the
        multilingual ones); SettingsError when there are several."""
        if len(self.clips) > 1:
            raise SettingsError(
                f"the multilingual text encoder works with one CLIP model, and this run has "
                f"{len(self.clips)} ({', '.join(self.clip_names)}): draw with one CLIP model, "
                "or with the CLIP text encoder"
            )
        return self.clip


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a settings error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError("CUDA was asked for but no CUDA device is available; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise SettingsError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _one_line(error: Exception, limit: int = 300) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _freeze(module: nn.Module, device: torch.device) -> None:
    module.requires_grad_(False)
    module.eval()
    module.to(device)


def clip_path(
    name_or_path: str,
    cache_dir: Path | None = None,
    *,
    offline: bool = False,
    progress: bool = True,
) -> Path:
    """The local file for a CLIP model name (fetched into the cache if needed) or path."""
    if name_or_path in CLIP_WEIGHTS:
        spec = CLIP_WEIGHTS[name_or_path]
        return ensure_weights(
            spec, cache_dir or default_cache_dir(), offline=offline, progress=progress
        )
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    known = ", ".join(CLIP_WEIGHTS)
    raise ModelLoadError(
        f"CLIP model {name_or_path!r} is neither a known name ({known}) nor an existing file"
    )


def decoder_path(
    url_or_path: str = DEFAULT_DECODER_URL,
    cache_dir: Path | None = None,
    *,
    offline: bool = False,
    progress: bool = True,
) -> Path:
    """The local file for a decoder URL (fetched into the cache if needed) or path."""
    return _dvae_path("decoder", url_or_path, cache_dir, offline=offline, progress=progress)


def encoder_path(
    url_or_path: str = DEFAULT_ENCODER_URL,
    cache_dir: Path | None = None,
    *,
    offline: bool = False,
    progress: bool = True,
) -> Path:
    """The local file for an encoder URL (fetched into the cache if needed) or path."""
    return _dvae_path("encoder", url_or_path, cache_dir, offline=offline, progress=progress)


def _dvae_path(
    part: str, url_or_path: str, cache_dir: Path | None, *, offline: bool, progress: bool
) -> Path:
    if _is_url(url_or_path):
        spec = (decoder_spec if part == "decoder" else encoder_spec)(url_or_path)
        return ensure_weights(
            spec, cache_dir or default_cache_dir(), offline=offline, progress=progress
        )
    path = Path(url_or_path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"{part} file {path} does not exist")
    return path


def clip_from_file(path: Path, device: torch.device) -> Any:
    """Build CLIP with `clip.model.build_model`, which infers the architecture from the shapes."""
    tensors = read_tensors(path)
    # TorchScript archives also keep the text transformer's attention mask, which is no weight.
    state = {k: v for k, v in tensors.items() if not k.endswith(".attn_mask")}
    needed = (
        "token_embedding.weight",
        "positional_embedding",
        "text_projection",
        "ln_final.weight",
    )
    missing = [k for k in needed if k not in state]
    if missing or not any(k.startswith("visual.") for k in state):
        what = f"missing {missing[0]}" if missing else "no visual.* weights"
        raise ModelLoadError(f"{path} does not look like a CLIP checkpoint ({what})")
    try:
        model = clip.model.build_model(dict(state))
        # build_model stores the weights in fp16; load them again at full precision.
        model.float()
        model.load_state_dict(
            {k: v.float() for k, v in state.items() if k not in _CLIP_NON_WEIGHTS}, strict=True
        )
    except (KeyError, RuntimeError, ValueError, AssertionError) as error:
        raise ModelLoadError(
            f"{path} does not match any CLIP architecture: {_one_line(error)}"
        ) from None
    _freeze(model, device)
    return model


_CLIP_NON_WEIGHTS = frozenset({"input_resolution", "context_length", "vocab_size"})
_BLOCK_KEY = re.compile(r"^blocks\.group_1\.block_(\d+)\.")


def decoder_shape(tensors: dict[str, torch.Tensor], path: Path) -> DecoderShape:
    """Infer `dall_e.Decoder`'s arguments from its weights' shapes."""
    try:
        input_w = tensors["blocks.input.w"]  # (n_init, vocab, 1, 1)
        output_w = tensors["blocks.output.conv.w"]  # (2 * channels, n_hid, 1, 1)
    except KeyError as error:
        raise ModelLoadError(
            f"{path} does not look like a DALL-E dVAE decoder (missing {error.args[0]})"
        ) from None
    if input_w.dim() == 4 and input_w.shape[1] == 3 and input_w.shape[2] > 1:
        raise ModelLoadError(
            f"{path} is the dVAE encoder (encoder.pkl), not the decoder: use decoder.pkl"
        )
    blocks = {int(m.group(1)) for k in tensors if (m := _BLOCK_KEY.match(k))}
    if input_w.dim() != 4 or output_w.dim() != 4 or not blocks:
        raise ModelLoadError(f"{path} does not look like a DALL-E dVAE decoder (unexpected shapes)")
    return DecoderShape(
        n_init=int(input_w.shape[0]),
        n_hid=int(output_w.shape[1]),
        n_blk_per_group=max(blocks),
        output_channels=int(output_w.shape[0]) // 2,
        vocab_size=int(input_w.shape[1]),
    )


def decoder_from_file(path: Path, device: torch.device) -> tuple[nn.Module, DecoderShape]:
    """Rebuild the decoder from its weights and freeze it (the pickled one requires grad)."""
    tensors = read_tensors(path)
    shape = decoder_shape(tensors, path)
    try:
        decoder = dall_e.Decoder(
            n_init=shape.n_init,
            n_hid=shape.n_hid,
            n_blk_per_group=shape.n_blk_per_group,
            output_channels=shape.output_channels,
            vocab_size=shape.vocab_size,
            device=torch.device("cpu"),
            requires_grad=False,
        )
        decoder.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except (RuntimeError, ValueError) as error:
        raise ModelLoadError(
            f"{path} is not a loadable DALL-E dVAE decoder: {_one_line(error)}"
        ) from None
    _freeze(decoder, device)
    return decoder, shape


def encoder_from_file(path: Path, device: torch.device) -> nn.Module:
    """Rebuild the dVAE encoder from its weights (shapes give its size) and freeze it."""
    tensors = read_tensors(path)
    try:
        input_w = tensors["blocks.input.w"]  # (n_hid, channels, 7, 7)
        output_w = tensors["blocks.output.conv.w"]  # (vocab, 8 * n_hid, 1, 1)
    except KeyError as error:
        raise ModelLoadError(
            f"{path} does not look like a DALL-E dVAE encoder (missing {error.args[0]})"
        ) from None
    if input_w.dim() == 4 and input_w.shape[2] == 1:
        raise ModelLoadError(
            f"{path} is the dVAE decoder (decoder.pkl), not the encoder: use encoder.pkl"
        )
    blocks = {int(m.group(1)) for k in tensors if (m := _BLOCK_KEY.match(k))}
    if input_w.dim() != 4 or output_w.dim() != 4 or not blocks:
        raise ModelLoadError(f"{path} does not look like a DALL-E dVAE encoder (unexpected shapes)")
    try:
        encoder = dall_e.Encoder(
            n_hid=int(input_w.shape[0]),
            n_blk_per_group=max(blocks),
            input_channels=int(input_w.shape[1]),
            vocab_size=int(output_w.shape[0]),
            device=torch.device("cpu"),
            requires_grad=False,
            use_mixed_precision=False,
        )
        encoder.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except (RuntimeError, ValueError) as error:
        raise ModelLoadError(
            f"{path} is not a loadable DALL-E dVAE encoder: {_one_line(error)}"
        ) from None
    module: nn.Module = encoder
    _freeze(module, device)
    return module


def load_encoder(
    url_or_path: str = DEFAULT_ENCODER_URL,
    *,
    device: torch.device,
    cache_dir: Path | None = None,
    offline: bool = False,
    progress: bool = True,
) -> nn.Module:
    """Fetch (if needed) and load the dVAE encoder, which turns pictures into tokens."""
    path = encoder_path(url_or_path, cache_dir, offline=offline, progress=progress)
    return encoder_from_file(path, device)


def load_models(
    clip_models: str | Sequence[str] = DEFAULT_CLIP_MODEL,
    decoder: str = DEFAULT_DECODER_URL,
    *,
    device: torch.device | str = "auto",
    cache_dir: Path | None = None,
    offline: bool = False,
    progress: bool = True,
) -> Models:
    """Fetch (if needed) and load the CLIP models and the decoder onto `device`. A model named
    twice (by the same name, or by two paths to one file) is loaded once."""
    target = device if isinstance(device, torch.device) else resolve_device(device)
    names = [clip_models] if isinstance(clip_models, str) else list(dict.fromkeys(clip_models))
    if not names:
        raise SettingsError("name at least one CLIP model")
    resolve_clips = partial(_clip_files, names, cache_dir, offline=offline, progress=progress)
    resolve_decoder = partial(decoder_path, decoder, cache_dir, offline=offline, progress=progress)
    # A mistyped local path fails before minutes are spent downloading another model.
    if _is_url(decoder):
        clip_files, decoder_file = resolve_clips(), resolve_decoder()
    else:
        decoder_file, clip_files = resolve_decoder(), resolve_clips()
    clips = tuple(clip_from_file(path, target) for path in clip_files.values())
    decoder_net, shape = decoder_from_file(decoder_file, target)
    return Models(
        clips=clips,
        clip_names=tuple(clip_files),
        decoder=decoder_net,
        decoder_shape=shape,
        device=target,
        decoder_sha256=sha256_file(decoder_file),
    )


def _clip_files(
    names: list[str], cache_dir: Path | None, *, offline: bool, progress: bool
) -> dict[str, Path]:
    """Each distinct CLIP file, by the first name given for it. Local paths are checked before
    anything is downloaded."""
    paths: dict[str, Path] = {}
    for name in sorted(names, key=lambda name: name in CLIP_WEIGHTS):
        paths[name] = clip_path(name, cache_dir, offline=offline, progress=progress)
    files: dict[Path, str] = {}
    for name in names:
        files.setdefault(paths[name].resolve(), name)
    return {name: path for path, name in files.items()}
