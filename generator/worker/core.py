"""The worker's core, whatever its transport: it holds the models, admits jobs into one batch
(up to `max_batch`), steps them, and reports progress, pictures and results on a `Channel`.
Jobs and cancellations act at step boundaries. A job that asks for a time-lapse keeps up to
`TIMELAPSE_FRAMES` small frames in memory and sends them as one animation with `Finished`.
The transports beside it feed it jobs and carry its messages: `child` (the bot's child
process, stdin/stdout) and `redis_streams`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol, TextIO

import torch
from PIL import Image

from generator.contract.errors import GeneratorError, PromptError
from generator.contract.images import ImageInput
from generator.contract.protocol import (
    CancelJob,
    Failed,
    Finished,
    Heartbeat,
    Message,
    ModelChoice,
    PictureIn,
    Preparing,
    Progress,
    ProtocolError,
    StartJob,
    WorkerOptions,
    decode,
    png_to_b64,
)
from generator.contract.settings import DrawSettings, Job
from generator.contract.timelapse import MAX_TIMELAPSE_BYTES, TIMELAPSE_FRAMES, frame_every
from generator.contract.weights import CLIP_WEIGHTS, clip_label, default_cache_dir
from generator.media.animation import best_format, encode_animation, fit_animation, scaled
from generator.method.engine import DrawResult, Engine, StepInfo, to_pil
from generator.method.fast import resolve_precision
from generator.method.latent import as_latent, pack_state, unpack_state
from generator.method.output import png_bytes, png_metadata
from generator.models.loaders import Models, load_encoder
from generator.models.text_encoders import MultilingualEncoder, load_multilingual
from generator.worker.admission import places
from generator.worker.metrics import WorkerMetrics

log = logging.getLogger("pseudo_dalle.worker")
HEARTBEAT_S = 1.0
MISSING_MODEL = "This drawing needs the CLIP model {model}, which its worker does not hold."


class Channel(Protocol):
    """Where the worker's messages go; `gone` is set when the worker should stop."""

    gone: threading.Event

    def send(self, message: Message) -> None: ...


@dataclass
class _Running:
    """A job in the batch: its request, its progress reporting state and, when it asked for
    a time-lapse, the frames kept so far (scaled down, at most `TIMELAPSE_FRAMES`)."""

    start: StartJob
    began: float
    last_sent: float
    first_step_done: float | None = None  # speeds count from here: compiling is not drawing
    frames: list[Image.Image] = field(default_factory=list, repr=False)


class Worker:
    """Draws up to `max_batch` jobs at once in one `Batch` (fewer where the memory left after its
    models allows fewer: `admission`), admitting waiting jobs and acting on cancellations at
    step boundaries."""

    def __init__(
        self,
        models: Models,
        channel: Channel,
        options: WorkerOptions,
        multilingual: MultilingualEncoder | None = None,
        picture_encoder: Callable[[], torch.nn.Module] | None = None,
        *,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.engine = Engine(
            models,
            cuda_graphs=None if options.cuda_graphs else False,
            multilingual=multilingual,
            picture_encoder=picture_encoder,
        )
        self.options = options
        self.precision = resolve_precision(options.precision, models.device)
        self.compiled_sizes: set[tuple[int, int]] = set()
        self.channel = channel
        self.max_batch = places(models, options, self.precision)
        self.jobs: queue.Queue[StartJob | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.abandoned: set[int] = set()  # taken over by another worker: drop, say nothing
        self.batch = self.engine.batch()
        self.running: dict[int, _Running] = {}  # by batch handle
        self.busy: tuple[int, ...] = ()  # job ids, for the heartbeat thread
        self.metrics = metrics  # told at progress reports and job ends, never at every step

    def read_commands(self, stream: TextIO) -> None:
        """Reader thread: queue jobs, note cancellations; end of input ends the worker."""
        try:
            for line in stream:
                try:
                    message = decode(line)
                except ProtocolError as error:
                    log.error("ignoring a bad line from the bot: %s", error)
                    continue
                if isinstance(message, StartJob):
                    self.jobs.put(message)
                elif isinstance(message, CancelJob):
                    self.cancelled.add(message.job_id)
        finally:
            self.channel.gone.set()
            self.jobs.put(None)  # wakes `serve` if it waits for a job

    def beat(self, worker_id: str) -> None:
        """Heartbeat thread, until the bot is gone."""
        while not self.channel.gone.is_set():
            self.channel.send(Heartbeat(worker_id=worker_id, busy_job_ids=list(self.busy)))
            self.channel.gone.wait(HEARTBEAT_S)

    def serve(self) -> None:
        """Until the bot is gone: admit, stop cancelled jobs, step; repeat. The bot being gone
        is seen at every step boundary, also while every place is taken."""
        while not self.channel.gone.is_set():
            while len(self.batch) < self.max_batch:
                try:
                    start = self.jobs.get(block=not self.batch)
                except queue.Empty:
                    break
                if start is None or self.channel.gone.is_set():
                    return
                self._admit(start)
            for handle, entry in list(self.running.items()):
                if entry.start.job_id in self.abandoned:
                    self.abandoned.discard(entry.start.job_id)
                    self.batch.stop(handle)
                    del self.running[handle]
                    self._update_busy()
                elif entry.start.job_id in self.cancelled:
                    self._done(handle, self.batch.stop(handle))
            if self.batch:
                self._step()

    def _admit(self, start: StartJob) -> None:
        held = self.engine.models.clip_names
        missing = [name for name in start.clip_models if name not in held]
        if missing:  # the bot gives jobs to workers holding their models; this one was stale
            self.channel.send(
                Failed(start.job_id, MISSING_MODEL, {"model": clip_label(missing[0])})
            )
            return
        try:
            options = self.options
            settings = DrawSettings(
                width=start.width,
                height=start.height,
                cutouts=min(start.cutouts, options.cutouts),
                precision=self.precision,
                checkpointing=options.checkpointing,
                compile=options.compile,
                relaxation=options.relaxation,
                clip_models=tuple(start.clip_models or held[:1]),
            )
            init = self._initial_logits(start, settings)
            job = Job(
                start.prompt,
                start.seed,
                start.iterations,
                init_logits=init,
                text_encoder=start.text_encoder,
                init_image=_picture(start.init_image),
                init_strength=start.init_strength,
                image_prompts=tuple(p.image() for p in start.image_prompts),
                auto_stop=start.auto_stop,
            )
            if job.init_image is not None and not self.engine.picture_encoder_loaded:
                self.channel.send(Preparing(start.job_id, "loading the picture encoder"))
            handle = self.batch.add(job, settings)
        except PromptError as error:
            self.channel.send(Failed(start.job_id, error.template, error.values))
            return
        except (GeneratorError, ValueError) as error:
            self.channel.send(Failed(start.job_id, str(error)))
            return
        except Exception:
            log.exception("job %s could not start", start.job_id)
            self.channel.send(Failed(start.job_id, "the worker hit an unexpected error"))
            return
        now = time.monotonic()
        self.running[handle] = _Running(start, began=now, last_sent=now)
        self._update_busy()
        size = (start.width, start.height)
        if self.options.compile and size not in self.compiled_sizes:
            self.compiled_sizes.add(size)
            self.channel.send(Preparing(start.job_id, "compiling the networks"))

    def _initial_logits(self, start: StartJob, settings: DrawSettings) -> torch.Tensor | None:
        """What a continued job starts from: an earlier job's continue state, or a latent file
        of a version before them. ValueError, saying why, when it cannot be used."""
        vocab = self.engine.models.vocab_size
        if start.init_state is not None:
            try:
                data = base64.b64decode(start.init_state, validate=True)
            except binascii.Error:
                raise ValueError("the saved state is not valid base64") from None
            return unpack_state(data, vocab, settings.token_grid)
        if start.init_latent_file is not None:
            try:
                logits = torch.load(start.init_latent_file, map_location="cpu", weights_only=True)
            except FileNotFoundError:
                raise ValueError("the drawing this continues is no longer saved") from None
            if not isinstance(logits, torch.Tensor):
                raise ValueError("the saved latent file holds no tensor")
            return as_latent(logits, vocab, settings.token_grid)
        return None

    def _step(self) -> None:
        try:
            finished = self.batch.step(self._on_step)
        except Exception as error:
            if isinstance(error, torch.OutOfMemoryError):
                reason = "the GPU ran out of memory; try a smaller size"
                if len(self.running) > 1:
                    reason += " or ask the operator to lower [worker] max_batch"
            else:
                log.exception("a step of jobs %s failed", list(self.busy))
                reason = "the worker hit an unexpected error"
            for entry in self.running.values():
                self.channel.send(Failed(entry.start.job_id, reason))
            self.running.clear()
            self._update_busy()
            if self.metrics is not None:
                self.metrics.ended(self.running)
            self.batch = self.engine.batch()
            if self.engine.device.type == "cuda":
                torch.cuda.empty_cache()
            return
        for handle, result in finished.items():
            self._done(handle, result)

    def _done(self, handle: int, result: DrawResult) -> None:
        entry = self.running.pop(handle)
        start = entry.start
        self._update_busy()
        if self.metrics is not None:
            self.metrics.ended(self.running)
        self.cancelled.discard(start.job_id)
        ended = "cancelled" if result.cancelled else "finished"
        log.info("job %s %s after %d steps", start.job_id, ended, result.steps)
        self.channel.send(
            Finished(
                job_id=start.job_id,
                steps=result.steps,
                seconds=result.timings.loop_s,
                cancelled=result.cancelled,
                png_b64=png_to_b64(png_bytes(result.image, png_metadata(result))),
                continue_state=base64.b64encode(pack_state(result.logits)).decode("ascii"),
                timelapse_b64=_timelapse(start.job_id, entry.frames, result.image)
                if start.timelapse
                else None,
            )
        )

    def _update_busy(self) -> None:
        self.busy = tuple(entry.start.job_id for entry in self.running.values())

    def _on_step(self, info: StepInfo) -> None:
        entry = self.running[info.job_index]
        picture = None
        room = len(entry.frames) < TIMELAPSE_FRAMES
        if entry.start.timelapse and room and info.step % frame_every(info.total) == 0:
            picture = to_pil(info.image)
            entry.frames.append(scaled(picture))
        now = time.monotonic()
        if entry.first_step_done is None:
            entry.first_step_done = now
        if now - entry.last_sent < entry.start.progress_every_s and info.step != info.total:
            return
        entry.last_sent = now
        if info.step > 1:
            rate = (info.step - 1) / max(now - entry.first_step_done, 1e-9)
        else:
            rate = 1 / max(now - entry.began, 1e-9)
        if self.metrics is not None:
            self.metrics.reported(info.job_index, info.step, rate, self.running)
        self.channel.send(
            Progress(
                job_id=entry.start.job_id,
                step=info.step,
                total=info.total,
                loss=float(info.loss.item()),
                iterations_per_second=rate,
                png_b64=png_to_b64(png_bytes(to_pil(info.image) if picture is None else picture)),
            )
        )


def _timelapse(job_id: int, frames: list[Image.Image], final: Image.Image) -> str | None:
    """The frames and the final picture as one animation, in base64; what does not fit the
    protocol's bound is thinned out. None, with a log line, when it cannot be made."""
    try:
        data = encode_animation([*frames, scaled(final)], best_format())
        fitted = fit_animation(data, MAX_TIMELAPSE_BYTES)
    except Exception:
        log.exception("job %s's time-lapse could not be made", job_id)
        return None
    return None if fitted is None else base64.b64encode(fitted).decode("ascii")


def _picture(picture: PictureIn | None) -> ImageInput | None:
    return None if picture is None else picture.image()


def picture_encoder_for(
    choice: ModelChoice, device: torch.device, cache_dir: Path | None
) -> Callable[[], torch.nn.Module]:
    """Loads the dVAE encoder the bot's settings name, when a job first needs it."""
    return partial(
        load_encoder, choice.encoder, device=device, cache_dir=cache_dir, offline=choice.offline
    )


def text_encoder_for(
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
