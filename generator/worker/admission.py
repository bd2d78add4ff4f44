"""How many jobs a worker takes at once: `max_batch`, or fewer when the memory left after every
model it holds is too little for that many of its dearest jobs.

The memory is `[worker] memory_limit_gb`, else (0) the GPU's; on a CPU without a limit, the
places are `max_batch`. The models count as they are held: each CLIP and the decoder in fp32,
plus the 16-bit copies of the image towers and the decoder that bf16 and fp16 draw with. A job
counts as `generator.contract.quality.job_bytes` says for the dearest quality the worker's
models can draw, at its own size and with at most the worker's cutouts.
"""

from __future__ import annotations

import logging

import torch

from generator.contract.protocol import WorkerOptions
from generator.contract.quality import PRESETS, job_bytes
from generator.models.loaders import Models

log = logging.getLogger("pseudo_dalle.worker")
GIB = 2**30


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
    """The quality of the dearest job these models can draw, and its memory."""
    main, held = models.clip_names[0], set(models.clip_names)
    costs = {
        name: job_bytes(
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


def places(models: Models, options: WorkerOptions, precision: str) -> int:
    """How many jobs to take at once (at least one), saying why in the log when the memory
    allows fewer than `max_batch`."""
    if options.memory_limit_gb:
        budget = int(options.memory_limit_gb * GIB)
    elif models.device.type == "cuda":
        budget = torch.cuda.get_device_properties(models.device).total_memory
    else:
        return options.max_batch
    held = model_bytes(models, precision)
    quality, job = dearest_job(models, options, precision)
    fit = (budget - held) // job
    chosen = max(1, min(options.max_batch, fit))
    said = (
        f"models {held / GIB:.1f} GiB, a {quality} job up to {job / GIB:.1f} GiB, "
        f"{budget / GIB:.1f} GiB in all"
    )
    if fit < 1:
        log.warning(
            "%s: even one job may not fit; lower [worker] cutouts or hold fewer models", said
        )
    elif chosen < options.max_batch:
        log.info("%d place(s) rather than max_batch %d: %s", chosen, options.max_batch, said)
    return chosen
