"""Writing pictures: PNGs that carry their prompt, seed and settings, and time-lapses."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, PngImagePlugin

from generator import __version__
from generator.contract.edits import EDIT_KEY, TOKENS_KEY, TokenGrid
from generator.contract.weights import clip_label
from generator.media.animation import SUFFIXES, encode_animation
from generator.method.engine import DrawResult


def png_metadata(result: DrawResult) -> dict[str, str]:
    """What a PNG records about how it was made; nothing that varies between identical runs.
    Pictures given as inputs are recorded by name and SHA-256, never their bytes; each CLIP
    model by its name (a file by its file name) with its share of the final loss; the token
    grid it was decoded from, so that it can be edited from the file alone; and, for an edit,
    what edit of which picture it is."""
    job = result.job
    metadata = {
        "prompt": job.prompt,
        "seed": str(job.seed),
        "iterations": str(result.steps),
        "settings": result.settings.to_json(),
        "clip_models": json.dumps(
            [
                {"model": clip_label(name), "final_loss": losses[-1] if losses else None}
                for name, losses in zip(result.clip_models, result.model_losses, strict=True)
            ],
            ensure_ascii=False,
        ),
        "Software": f"pseudo-dalle {__version__}",
        TOKENS_KEY: token_grid(result).to_text(),
    }
    if job.edit is not None:
        metadata[EDIT_KEY] = job.edit.record()
    if job.init_image is not None:
        metadata["init_image"] = json.dumps(
            {
                "name": job.init_image.name,
                "sha256": job.init_image.sha256,
                "strength": job.init_strength,
            },
            ensure_ascii=False,
        )
    if job.image_prompts:
        metadata["image_prompts"] = json.dumps(
            [{"name": p.name, "sha256": p.sha256, "weight": p.weight} for p in job.image_prompts],
            ensure_ascii=False,
        )
    return metadata


def token_grid(result: DrawResult) -> TokenGrid:
    """The tokens the picture was decoded from: the most likely one at each cell."""
    _, rows, cols, vocab = result.logits.shape
    tokens = result.logits[0].argmax(dim=-1).flatten().tolist()
    return TokenGrid(rows, cols, vocab, result.decoder_sha256, tuple(tokens))


def png_bytes(image: Image.Image, metadata: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place, readable as
    any file the user makes (the temporary file is made private, 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
    umask = os.umask(0)  # the only way to read it; set back at once
    os.umask(umask)
    os.chmod(tmp.name, 0o666 & ~umask)
    os.replace(tmp.name, path)


def save_result(result: DrawResult, path: Path) -> None:
    write_atomically(path, png_bytes(result.image, png_metadata(result)))


def save_timelapse(frames: Sequence[Path], path: Path) -> None:
    """An animation of the frames, holding the last one a little longer: WebP or GIF, as
    `path` ends (`generator.media.animation.SUFFIXES`)."""
    images = []
    for frame in frames:
        with Image.open(frame) as image:
            images.append(image.convert("RGB"))
    write_atomically(path, encode_animation(images, SUFFIXES[path.suffix.lower()]))


def read_png_text(path: Path) -> dict[str, str]:
    """The text chunks of a PNG written by `save_result`."""
    with Image.open(path) as image:
        image.load()
        return {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
