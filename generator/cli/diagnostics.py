"""What an operator needs to see when something is wrong: versions, device, weights on disk.

Used by `pseudo-dalle doctor`. Every check reports instead of raising: the point is to print as
much as can be known.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path

from generator import __version__
from generator.contract.weights import (
    CLIP_WEIGHTS,
    DEFAULT_ENCODER_URL,
    WeightSpec,
    decoder_spec,
    encoder_spec,
    sha256_file,
)

PACKAGES = ("torch", "torchvision", "clip-anytorch", "DALL-E", "discord.py", "pillow")


def version_lines() -> list[str]:
    installed_at = Path(__file__).resolve().parent.parent
    lines = [
        f"pseudo-dalle {__version__} ({installed_at})",
        f"Python {platform.python_version()} ({sys.executable})",
    ]
    for name in PACKAGES:
        try:
            lines.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name}: not installed")
    return [*lines, image_format_line()]


def image_format_line() -> str:
    """Which of the picture formats the bot writes or reads beyond PNG this Pillow supports."""
    from PIL import features

    found = []
    for name, label in (("webp", "WebP"), ("avif", "AVIF")):
        if features.check(name):
            found.append(f"{label} yes ({features.version(name) or 'version unknown'})")
        else:
            found.append(f"{label} NO")
    return f"Pillow image formats: {', '.join(found)}"


def device_lines(device: str) -> list[str]:
    try:
        import torch
    except ImportError as error:
        return [f"torch cannot be imported: {error}"]
    if not torch.cuda.is_available():
        note = " (asked for CUDA: it will fail)" if device.startswith("cuda") else ""
        return [f"device: CPU only, no CUDA device visible{note}; drawing will be slow"]
    lines = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        lines.append(
            f"device cuda:{index}: {name}, {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB"
        )
    return lines


def _weight_line(
    label: str, path: Path, spec: WeightSpec | None, when: str = "on first start"
) -> str:
    if not path.is_file():
        where = spec.sources[0].url if spec else "its source"
        return f"{label}: missing at {path} (downloaded {when} from {where})"
    size = f"{path.stat().st_size / 2**20:.0f} MiB"
    digests = {s.sha256 for s in spec.sources if s.sha256} if spec else set()
    if not digests:
        return f"{label}: {path}, {size}, no published SHA-256 to compare with"
    digest = sha256_file(path)
    verdict = "SHA-256 matches" if digest in digests else f"SHA-256 MISMATCH ({digest[:16]}…)"
    return f"{label}: {path}, {size}, {verdict}"


def weight_lines(
    clip_model: str, decoder: str, cache_dir: Path, encoder: str = DEFAULT_ENCODER_URL
) -> list[str]:
    """Where each model's weights are and whether they match a known digest."""
    lines = [f"weights cache: {cache_dir}"]
    if clip_model in CLIP_WEIGHTS:
        spec = CLIP_WEIGHTS[clip_model]
        lines.append(_weight_line(f"CLIP {clip_model}", cache_dir / spec.filename, spec))
    else:
        lines.append(_weight_line("CLIP (local file)", Path(clip_model).expanduser(), None))
    if decoder.startswith(("http://", "https://")):
        spec = decoder_spec(decoder)
        lines.append(_weight_line("dVAE decoder", cache_dir / spec.filename, spec))
    else:
        lines.append(_weight_line("dVAE decoder (local file)", Path(decoder).expanduser(), None))
    label = "dVAE encoder (pictures in)"
    when = "by the first job that starts from a picture, zooms out or upscales creatively"
    if encoder.startswith(("http://", "https://")):
        spec = encoder_spec(encoder)
        lines.append(_weight_line(label, cache_dir / spec.filename, spec, when))
    else:
        lines.append(_weight_line(f"{label} (local file)", Path(encoder).expanduser(), None, when))
    return lines
