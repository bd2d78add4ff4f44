"""Screening with the main CLIP: what a picture comes close to, and whether a prompt means
something it must not (`generator.contract.screening` says what and why).

A picture is prepared as CLIP's own preprocessing prepares one (the shorter side scaled to the
input resolution with antialiased bicubic, the centre cropped square, CLIP's mean and std), then
goes through the image tower once. Its unit embedding is compared with each concept's text
embedding (from the same CLIP's text tower, computed once per text and kept on the device) and,
where Q16 learned prompts for this CLIP, with those two rows: Q16's probability of
inappropriate content is the softmax of 100 times the two cosines, taken at row 1. Everything
stays on the device until the one copy that makes the `Scores`, so screening a picture waits
for the device once.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generator.contract.errors import ModelLoadError
from generator.contract.screening import MEANING_CONCEPTS, Concept, Scores, ScreeningSpec
from generator.method.objective import embed_cutouts
from generator.models.learned_prompts import learned_prompts
from generator.models.loaders import Models

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip

# Q16's logit scale: the softmax of 100 times each cosine (main/models/clip.py).
LEARNED_SCALE = 100.0


class Screener:
    """Scores pictures and checks prompts with one CLIP model (a worker's main one).

    `learned` is Q16's two rows (2, D) for that CLIP (`generator.models.learned_prompts`), or
    None where it has none. ModelLoadError when they are not as wide as its embeddings.
    """

    def __init__(self, clip_model: Any, learned: torch.Tensor | None = None) -> None:
        self.clip = clip_model
        self.device = clip_model.text_projection.device
        self.resolution = int(clip_model.visual.input_resolution)
        width = int(clip_model.text_projection.shape[1])
        if learned is not None and tuple(learned.shape) != (2, width):
            raise ModelLoadError(
                f"Q16's learned prompts are {tuple(learned.shape)}, and this CLIP's embeddings "
                f"are {width} wide: they belong to another CLIP model"
            )
        self.learned = (
            None if learned is None else F.normalize(learned.float().to(self.device), dim=-1)
        )
        self._texts: dict[str, torch.Tensor] = {}  # concept text -> unit embedding (D,)

    @classmethod
    def for_models(cls, models: Models) -> Screener:
        """A screener with the main CLIP and, where Q16 has them, its learned prompts;
        ModelLoadError when the vendored file is damaged."""
        main = models.clip_names[0]
        return cls(models.clip, learned_prompts(main, models.device))

    def text_embeddings(self, concepts: tuple[Concept, ...]) -> torch.Tensor:
        """Unit text embeddings (C, D) of the concepts, each text embedded once and kept. A
        text longer than CLIP reads is cut at its context."""
        missing = list(dict.fromkeys(c.text for c in concepts if c.text not in self._texts))
        if missing:
            tokens = clip.tokenize(missing, int(self.clip.context_length), truncate=True)
            with torch.no_grad():
                embedded = self.clip.encode_text(tokens.to(self.device)).float()
            for text, embedding in zip(missing, F.normalize(embedded, dim=-1), strict=True):
                self._texts[text] = embedding
        return torch.stack([self._texts[c.text] for c in concepts])

    @torch.no_grad()
    def image_embedding(self, image: torch.Tensor) -> torch.Tensor:
        """The unit image embedding (D,) of a picture (3, H, W) in [0, 1], prepared as CLIP's
        preprocessing prepares a picture."""
        crop = clip_view(image.to(self.device), self.resolution)  # (3, r, r)
        return embed_cutouts(self.clip.visual, crop[None], self.clip.dtype)[0]

    @torch.no_grad()
    def score(self, image: torch.Tensor, spec: ScreeningSpec) -> Scores:
        """What `spec`'s concepts and Q16 say of a picture (3, H, W) in [0, 1]."""
        embedding = self.image_embedding(image)
        scores = self.text_embeddings(spec.picture_concepts()) @ embedding  # (C,)
        if self.learned is not None:
            learned = (LEARNED_SCALE * (self.learned @ embedding)).softmax(dim=0)[1]
            scores = torch.cat([scores, learned[None]])
        values = scores.tolist()  # the one wait for the device
        if self.learned is None:
            return Scores(concepts=tuple(values))
        return Scores(concepts=tuple(values[:-1]), learned=values[-1])

    @torch.no_grad()
    def meaning(self, prompts: torch.Tensor) -> Concept | None:
        """The first of `MEANING_CONCEPTS` that a prompt part comes too close to (cosine
        similarity at or above its threshold), or None. `prompts` (P, D) are unit embeddings
        of a job's positive parts in this CLIP's text space."""
        if not len(prompts):
            return None
        concepts = self.text_embeddings(MEANING_CONCEPTS)  # (C, D)
        closest = (prompts.to(self.device).float() @ concepts.T).max(dim=0).values  # (C,)
        for concept, similarity in zip(MEANING_CONCEPTS, closest.tolist(), strict=True):
            if similarity >= concept.threshold:
                return concept
        return None


def clip_view(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """A picture (3, H, W) as CLIP's preprocessing sees it (3, r, r): the shorter side scaled
    to `resolution` (bicubic, antialiased as Pillow's is), the centre cropped square, clipped
    to [0, 1] as the 8-bit picture Pillow returns would be."""
    height, width = image.shape[-2:]
    short, long = min(height, width), max(height, width)
    scaled_long = int(resolution * long / short)  # as torchvision's Resize rounds
    size = (resolution, scaled_long) if height <= width else (scaled_long, resolution)
    if (height, width) != size:
        image = F.interpolate(
            image[None], size=size, mode="bicubic", antialias=True, align_corners=False
        )[0]
    top = round((size[0] - resolution) / 2)  # as torchvision's CenterCrop rounds
    left = round((size[1] - resolution) / 2)
    crop = image[:, top : top + resolution, left : left + resolution]
    return crop.clamp(0, 1)


def pixels(image: Image.Image, device: torch.device) -> torch.Tensor:
    """An RGB picture as a tensor (3, H, W) in [0, 1] on `device`."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    return (torch.from_numpy(array.copy()).to(device).permute(2, 0, 1).float()) / 255


def highest(first: Scores, second: Scores) -> Scores:
    """The higher score of two pictures for each concept (and for Q16's probability): what a
    time-lapse of both comes closest to."""
    learned = [value for value in (first.learned, second.learned) if value is not None]
    return Scores(
        concepts=tuple(max(a, b) for a, b in zip(first.concepts, second.concepts, strict=True)),
        learned=max(learned) if learned else None,
    )
