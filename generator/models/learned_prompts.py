"""Q16's learned prompts: two text embeddings per CLIP model ("non inappropriate" and
"inappropriate") that classify a picture by its CLIP image embedding.

They are vendored in `q16/` as plain numpy arrays, not the pickles Q16 publishes (a pickle can
run code when it is read); `q16/NOTICE` names their source, commit, licence and paper, and
tools/convert_q16.py wrote them. Each file's SHA-256 is written here too, so that a damaged
file is refused, saying which, instead of screening pictures with whatever it holds.
"""

from __future__ import annotations

import hashlib
import io
from importlib.resources import files
from importlib.resources.abc import Traversable

import numpy as np
import torch

from generator.contract.errors import ModelLoadError
from generator.contract.screening import LEARNED_PROMPT_MODELS

VENDORED = files("generator.models") / "q16"
# The SHA-256 of each vendored file, as q16/NOTICE gives them.
SHA256 = {
    "ViT-B/32": "ed5c7a0456df4722b290b28a537b5682eb7e68a10bc7bba41ed5aea32a53e520",
    "ViT-B/16": "9fb06bbf3b8206eca390d9114015a7eef53ed99ee8a9b2eb27e664072bcae1f8",
    "ViT-L/14": "eb1426d84248dc6ed46b854e4b536a4d14fd2b9de89cd9e6ed3bbafd246d6f98",
}


def file_name(clip_name: str) -> str:
    """The vendored file of a CLIP model's learned prompts: ``ViT-B/32`` -> ``ViT-B-32.npy``."""
    return f"{clip_name.replace('/', '-')}.npy"


def learned_prompts(
    clip_name: str, device: torch.device, *, folder: Traversable = VENDORED
) -> torch.Tensor | None:
    """Q16's two learned embeddings (2, D) for `clip_name`, in fp32 on `device`, as stored (not
    normalised): row 0 "non inappropriate", row 1 "inappropriate". None for a model Q16 has
    none for (another name, or a checkpoint given as a file). ModelLoadError, naming the file,
    when the file in `folder` (the package's own unless a test says otherwise) is not the one
    vendored."""
    if clip_name not in LEARNED_PROMPT_MODELS:
        return None
    name = file_name(clip_name)
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelLoadError(
            f"Q16's learned prompts for {clip_name} ({path}) cannot be read: {error}; "
            "reinstall pseudo-dalle"
        ) from None
    if hashlib.sha256(data).hexdigest() != SHA256[clip_name]:
        raise ModelLoadError(
            f"Q16's learned prompts for {clip_name} ({path}) are damaged: their SHA-256 is not "
            "the one vendored; reinstall pseudo-dalle"
        )
    # The SHA-256 pins the contents: a float16 (2, D) array, every value finite.
    array = np.load(io.BytesIO(data), allow_pickle=False)
    return torch.from_numpy(array.astype(np.float32)).to(device)
