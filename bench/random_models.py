"""Models with the real architectures and random weights, written in the real file formats
and loaded through the loaders users run: speed and memory do not depend on the values."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from generator.models.loaders import Models, load_models
from tests.synthetic import Size, write_clip, write_decoder


def random_models(device: torch.device, size: Size = "full") -> Models:
    """CLIP ViT-B/32 and the 8192-token decoder at `size` ("full", or the tests' "tiny")."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        return load_models(
            str(write_clip(folder / "clip.pt", size)),
            str(write_decoder(folder / "decoder.pt", size, "state_dict")),
            device=device,
            progress=False,
        )
