"""How many jobs a worker takes at once, and which: the memory left after every model it holds,
counted for each job at its own size.

The memory is `[worker] memory_limit_gb`, else (0) the GPU's; on a CPU without a limit nothing
is counted and the places are `max_batch`. The models count as they are held: each CLIP and the
decoder in fp32, plus the 16-bit copies of the image towers and the decoder that bf16 and fp16
draw with. A job counts as `generator.contract.quality.job_bytes` says, at its own size, cutouts
and CLIP models, so that a 768x512 pan counts half again a 512x512 drawing and Upscale
(Creative) at 1024x1024 four times.

The places a worker offers the bot are as many of the dearest quality's jobs (at its preset's
size, with at most the worker's cutouts) as fit, at most `max_batch`. A job that comes while the
ones being drawn leave it too little waits for them to finish (`Fit.LATER`); one that would not
fit even alone is refused (`Fit.NEVER`), saying how much it needs.
"""

from __future__ import annotations

import logging
from enum import Enum

import torch

from generator.contract.jobs import JobSpec
from generator.contract.protocol import WorkerOptions
from generator.contract.quality import PRESETS, job_bytes
from generator.models.loaders import Models

log = logging.getLogger("pseudo_dalle.worker")
GIB = 2**30


class Fit(Enum):
    NOW = "now"  # there is room beside the jobs being drawn
    LATER = "later"  # once some of them have finished
    NEVER = "never"  # not even alone


def _bytes(module: torch.nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def model_bytes(models: Models, precision: str) -> int:
    """What the models take: each CLIP and the decoder, with the 16-bit copies of the image
    towers and the decoder that a 16-bit `precision` draws with."""
    held = sum(_bytes(clip) for clip in models.clips) + _bytes(models.decoder)
    if precision == "fp32":
        return held
    drawn = sum(_bytes(clip.visual) for clip in models.clips) + _bytes(models.decoder)
    return held + drawn // 2


def dearest_job(models: Models, options: WorkerOptions, precision: str) -> tuple[str, int]:
    """The quality of the dearest job these models can draw at its preset's size, and its
    memory."""
    main, held = models.clip_names[0], set(models.clip_names)
    costs = {
        name: job_bytes(
            preset.size,
            preset.size,
            min(preset.cutouts, options.cutouts),
            preset.models(main),
            half=precision != "fp32",
        )
        for name, preset in PRESETS.items()
        if set(preset.models(main)) <= held
    }
    dearest = max(costs, key=lambda name: costs[name])
    return dearest, costs[dearest]


class Admission:
    """What a worker's memory holds: `places` to offer, and whether each job fits."""

    def __init__(self, models: Models, options: WorkerOptions, precision: str) -> None:
        self._models = models
        self._half = precision != "fp32"
        self.held = model_bytes(models, precision)
        if options.memory_limit_gb:
            self.budget: int | None = int(options.memory_limit_gb * GIB)
        elif models.device.type == "cuda":
            self.budget = torch.cuda.get_device_properties(models.device).total_memory
        else:
            self.budget = None
        self.places = self._places(options, precision)

    @property
    def room(self) -> int | None:
        """The bytes left for jobs after the models; None when nothing is counted."""
        return None if self.budget is None else self.budget - self.held

    def cost(self, spec: JobSpec) -> int:
        """The memory `spec` takes while it is drawn."""
        models = spec.clip_models or self._models.clip_names
        return job_bytes(spec.width, spec.height, spec.cutouts, models, half=self._half)

    def fit(self, spec: JobSpec, drawing: list[JobSpec]) -> Fit:
        """Whether `spec` fits beside the jobs `drawing`."""
        room = self.room
        if room is None:
            return Fit.NOW
        need = self.cost(spec)
        if need > room:
            return Fit.NEVER
        used = sum(self.cost(other) for other in drawing)
        return Fit.NOW if used + need <= room else Fit.LATER

    def _places(self, options: WorkerOptions, precision: str) -> int:
        """How many jobs to offer (at least one), saying why in the log when the memory allows
        fewer than `max_batch`."""
        room = self.room
        if room is None:
            return options.max_batch
        quality, job = dearest_job(self._models, options, precision)
        fit = room // job
        chosen = max(1, min(options.max_batch, fit))
        said = (
            f"models {self.held / GIB:.1f} GiB, a {quality} job up to {job / GIB:.1f} GiB, "
            f"{(room + self.held) / GIB:.1f} GiB in all"
        )
        if fit < 1:
            log.warning(
                "%s: even one job may not fit; lower [worker] cutouts or hold fewer models", said
            )
        elif chosen < options.max_batch:
            log.info("%d place(s) rather than max_batch %d: %s", chosen, options.max_batch, said)
        return chosen
