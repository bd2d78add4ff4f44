"""A worker as both entry points make one (`child`, `redis_streams`): torch's threads, then the
models the bot's settings name, the multilingual encoder they ask for, the picture encoder
loaded when a job first needs it, the screener of pictures and prompts, and the metrics when an
address is given."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from generator.contract.protocol import ModelChoice, WorkerOptions
from generator.contract.threads import WORKER_RESERVED_CORES, choose_threads
from generator.contract.weights import CLIP_WEIGHTS, default_cache_dir
from generator.method.runtime import configure_torch
from generator.method.screening import Screener
from generator.models.loaders import Models, load_encoder, load_models
from generator.models.text_encoders import MultilingualEncoder, load_multilingual
from generator.worker.core import Channel, Worker
from generator.worker.metrics import MetricsServer, WorkerMetrics

log = logging.getLogger("pseudo_dalle.worker")


def set_threads(options: WorkerOptions) -> int:
    """Set torch's CPU threads as `options` say, before the process does any torch work."""
    threads = choose_threads(options.threads, reserve=WORKER_RESERVED_CORES)
    configure_torch(threads)
    log.info("torch uses %d CPU thread(s)", threads)
    return threads


def build_worker(
    choice: ModelChoice,
    options: WorkerOptions,
    channel: Channel,
    *,
    device: str,
    cache_dir: Path | None,
    metrics_bind: str,
) -> tuple[Worker, MetricsServer | None]:
    """A worker on `device` that sends on `channel`, and its metrics server (None without
    `metrics_bind`, or when that address cannot be listened on). GeneratorError, saying why,
    when the models cannot be loaded."""
    models = load_models(
        choice.clip_models(),
        choice.decoder,
        device=device,
        cache_dir=cache_dir,
        offline=choice.offline,
    )
    multilingual = _multilingual(choice, models, cache_dir)
    encoder = partial(
        load_encoder,
        choice.encoder,
        device=models.device,
        cache_dir=cache_dir,
        offline=choice.offline,
    )
    metrics = WorkerMetrics(models.device) if metrics_bind else None
    worker = Worker(
        models,
        channel,
        options,
        multilingual,
        encoder,
        metrics=metrics,
        screener=build_screener(models),
    )
    server = metrics.serve(metrics_bind) if metrics is not None else None
    return worker, server


def build_screener(models: Models) -> Screener | None:
    """The screener of the main CLIP; None, with an error in the log, when it cannot be built
    (Q16's learned prompts damaged, say). The worker still draws then, and the bot withholds
    every picture it could not screen."""
    try:
        return Screener.for_models(models)
    except Exception:
        log.exception(
            "picture screening is off: it could not be set up with %s; pictures of jobs that "
            "ask for screening go out unscreened (withheld) and prompts cannot be checked by "
            "meaning",
            models.clip_names[0],
        )
        return None


def _multilingual(
    choice: ModelChoice, models: Models, cache_dir: Path | None
) -> MultilingualEncoder | None:
    """The multilingual encoder the bot's settings ask for (None when prompts go to CLIP)."""
    if choice.text_encoder == "clip":
        return None
    return load_multilingual(
        choice.multilingual_model,
        clip_dim=int(models.clip.text_projection.shape[1]),
        clip_name=choice.clip if choice.clip in CLIP_WEIGHTS else None,
        device=models.device,
        cache_dir=cache_dir or default_cache_dir(),
        offline=choice.offline,
    )
