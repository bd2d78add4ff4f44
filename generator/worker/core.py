"""The worker's core, whatever its transport: it holds the models, admits jobs into one batch
(up to `max_batch`, and as many as its memory holds), steps them, and reports progress,
pictures and results on a `Channel`.

The transports beside it (`child`: the bot's child process on stdin/stdout; `redis_streams`)
feed it through `submit`, `cancel`, `abandon` and `close`, from their own threads; the serving
thread applies them at step boundaries, so a job never changes halfway through a step. A job
that asks for a time-lapse keeps up to `TIMELAPSE_FRAMES` small frames in memory and sends them
as one animation with `Finished`. Every message names a reason by its code
(`generator.contract.reasons`), never by a sentence.

A job whose spec screens its pictures gets the `Screener`'s scores with each picture it is sent:
every progress picture, the final one and, for a time-lapse, the highest score of its frames and
final picture for each concept. Screening runs only when a picture is sent or a frame kept, never
inside the step. A picture that could not be screened (no screener loaded, or an error) goes out
with no scores, which the bot reads as crossing every threshold: screening fails closed. A job
whose spec checks its prompt by meaning is refused before its first step when a positive part
comes too close to one of the unsafe concepts.
"""

from __future__ import annotations

import base64
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from PIL import Image

from generator.contract.errors import GeneratorError, MemberError
from generator.contract.protocol import (
    CheckMeaning,
    Failed,
    Finished,
    Message,
    Preparing,
    Progress,
    StartJob,
    WorkerOptions,
    png_to_b64,
)
from generator.contract.reasons import (
    CANNOT_START,
    COMPILING,
    JOB_TOO_BIG,
    LOADING_PICTURE_ENCODER,
    OUT_OF_MEMORY,
    OUT_OF_MEMORY_SHARED,
    WAITING_FOR_MEMORY,
    WORKER_ERROR,
    Reason,
)
from generator.contract.screening import Scores
from generator.contract.timelapse import MAX_TIMELAPSE_BYTES, TIMELAPSE_FRAMES, frame_every
from generator.media.animation import best_format, encode_animation, fit_animation, scaled
from generator.method.engine import DrawResult, Engine, StepInfo, to_pil
from generator.method.fast import resolve_precision
from generator.method.latent import pack_state
from generator.method.output import png_bytes, png_metadata
from generator.method.screening import Screener, highest, pixels
from generator.models.loaders import Models
from generator.models.text_encoders import MultilingualEncoder
from generator.worker.admission import GIB, Admission, Fit
from generator.worker.jobs import (
    Refusal,
    answer_meaning,
    check_drawable,
    check_meaning,
    draw_settings,
    engine_job,
)
from generator.worker.metrics import WorkerMetrics

log = logging.getLogger("pseudo_dalle.worker")


class Channel(Protocol):
    """Where the worker's messages go. `send` must not block for long: it is called between
    steps."""

    def send(self, message: Message) -> None: ...


@dataclass
class _Running:
    """A job in the batch: its request, its progress reporting state and, when it asked for
    a time-lapse, the frames kept so far (scaled down, at most `TIMELAPSE_FRAMES`) with the
    highest scores of those screened (`frames_unscreened` once one could not be)."""

    start: StartJob
    began: float
    last_sent: float
    first_step_done: float | None = None  # speeds count from here: compiling is not drawing
    frames: list[Image.Image] = field(default_factory=list, repr=False)
    frames_screening: Scores | None = None
    frames_unscreened: bool = False

    def frame_screened(self, scores: Scores | None) -> None:
        """A frame was kept, with what screening said of it."""
        if scores is None:
            self.frames_unscreened = True
        elif self.frames_screening is None:
            self.frames_screening = scores
        else:
            self.frames_screening = highest(self.frames_screening, scores)

    def timelapse_screening(self, final: Scores | None) -> Scores | None:
        """The time-lapse's scores, its final picture's `final` included; None when a picture
        of it was not screened."""
        if final is None or self.frames_unscreened:
            return None
        return final if self.frames_screening is None else highest(self.frames_screening, final)


class Worker:
    """Draws up to `max_batch` jobs at once in one `Batch` (fewer where the memory left after its
    models allows fewer, each job counted at its own size: `admission`), admitting waiting jobs
    in order and acting on cancellations at step boundaries. A job that does not fit beside
    those being drawn waits, first in line, for one to end; one that does not fit alone is
    refused.

    `serve` runs in one thread; `submit`, `cancel`, `abandon`, `close` and `busy` are safe to
    use from any other. Without a `screener`, the pictures of jobs that ask for screening go out
    unscreened (withheld by the bot) and jobs that ask for the meaning check are refused.
    """

    def __init__(
        self,
        models: Models,
        channel: Channel,
        options: WorkerOptions,
        multilingual: MultilingualEncoder | None = None,
        picture_encoder: Callable[[], torch.nn.Module] | None = None,
        *,
        metrics: WorkerMetrics | None = None,
        screener: Screener | None = None,
    ) -> None:
        self._admitting: int | None = None  # the job `_admit` is starting, told of slow loads
        self.engine = Engine(
            models,
            cuda_graphs=None if options.cuda_graphs else False,
            multilingual=multilingual,
            picture_encoder=None
            if picture_encoder is None
            else functools.partial(self._load_encoder, picture_encoder),
        )
        self.options = options
        self.precision = resolve_precision(options.precision, models.device)
        self.channel = channel
        self.admission = Admission(models, options, self.precision)
        self.max_batch = self.admission.places
        self.metrics = metrics  # told at progress reports and job ends, never at every step
        self.screener = screener
        self._compiled_sizes: set[tuple[int, int]] = set()
        self._told_to_wait: int | None = None  # the job first in line told it waits for memory
        self._batch = self.engine.batch()
        self._running: dict[int, _Running] = {}  # by batch handle; the serving thread's own
        self._busy: tuple[int, ...] = ()
        # What other threads ask for, kept until the next step boundary.
        self._lock = threading.Condition()
        self._waiting: deque[StartJob] = deque()
        self._cancelled: set[int] = set()  # also of jobs still to come: applied once admitted
        self._abandoned: set[int] = set()
        self._checks: list[CheckMeaning] = []  # prompts to check by meaning, the oldest first
        self._closed = False

    # -- what other threads call -----------------------------------------------------------------

    def submit(self, start: StartJob) -> None:
        """Draw `start` once a place is free (at a step boundary), after those already waiting."""
        with self._lock:
            self._abandoned.discard(start.job_id)  # a new delivery of it: no longer abandoned
            self._waiting.append(start)
            self._lock.notify()

    def check(self, message: CheckMeaning) -> None:
        """Check a prompt by meaning (at the next step boundary, before any job waiting) and
        send the `MeaningChecked` answer."""
        with self._lock:
            self._checks.append(message)
            self._lock.notify()

    def cancel(self, job_id: int) -> None:
        """Stop the job at the next step boundary and send what it drew (`Finished` with
        `cancelled`); one still to come is stopped before its first step."""
        with self._lock:
            self._cancelled.add(job_id)

    def abandon(self, job_id: int) -> None:
        """Another worker took the job over: drop it at the next step boundary (a waiting one at
        once), sending nothing. The same job submitted again afterwards is drawn."""
        with self._lock:
            waiting = [start for start in self._waiting if start.job_id == job_id]
            for start in waiting:
                self._waiting.remove(start)
            if not waiting:
                self._abandoned.add(job_id)

    def close(self) -> None:
        """Make `serve` return at the next step boundary (at once while it waits for a job);
        the jobs it draws end there, unreported."""
        with self._lock:
            self._closed = True
            self._lock.notify()

    @property
    def busy(self) -> tuple[int, ...]:
        """The ids of the jobs being drawn."""
        return self._busy

    # -- the serving thread ----------------------------------------------------------------------

    def serve(self) -> None:
        """Until `close`: admit waiting jobs, answer prompt checks, stop cancelled and abandoned
        jobs, step; repeat."""
        while self._admit_waiting():
            self._answer_checks()
            self._apply_stops()
            if self._batch:
                self._step()

    def _answer_checks(self) -> None:
        with self._lock:
            checks, self._checks = self._checks, []
        for check in checks:
            self.channel.send(answer_meaning(self.engine, self.screener, check))

    def _admit_waiting(self) -> bool:
        """Fill the free places, waiting for a job while there is nothing to draw; False once
        the worker is closed."""
        while len(self._batch) < self.max_batch:
            with self._lock:
                while not (self._waiting or self._closed or self._batch or self._checks):
                    self._lock.wait()
                if self._closed:
                    return False
                if not self._waiting:
                    return True
                start = self._waiting[0]
                drawing = [entry.start.spec for entry in self._running.values()]
                fit = self.admission.fit(start.spec, drawing)
                if fit is not Fit.LATER:
                    self._waiting.popleft()
            if fit is Fit.LATER:  # it waits, first in line, for the memory to free up
                if self._told_to_wait != start.job_id:
                    self._told_to_wait = start.job_id
                    self.channel.send(Preparing(start.job_id, WAITING_FOR_MEMORY.code))
                return True
            if fit is Fit.NEVER:
                self._too_big(start)
            else:
                self._admit(start)
        with self._lock:
            return not self._closed

    def _apply_stops(self) -> None:
        with self._lock:
            abandoned, self._abandoned = self._abandoned, set()  # the rest named no job here
            cancelled = set(self._cancelled)
        for handle, entry in list(self._running.items()):
            job_id = entry.start.job_id
            if job_id in abandoned:
                log.info("job %s dropped: another worker has it", job_id)
                self._batch.stop(handle)
                del self._running[handle]
                self._ended()
                with self._lock:
                    self._cancelled.discard(job_id)
            elif job_id in cancelled:
                self._done(handle, self._batch.stop(handle))

    def _admit(self, start: StartJob) -> None:
        spec = start.spec
        try:
            check_drawable(spec, self.engine.models.clip_names, self.options)
            settings = draw_settings(spec, self.options, self.precision)
            self._admitting = start.job_id
            job = engine_job(start, settings, self.engine)
            if spec.screening.meaning:
                check_meaning(self.engine, self.screener, job, settings, start.job_id)
            handle = self._batch.add(job, settings)
        except (Refusal, MemberError) as error:
            self._fail(start.job_id, error.reason, error.values)
            return
        except (GeneratorError, ValueError) as error:
            log.error("job %s cannot start: %s", start.job_id, error)
            self._fail(start.job_id, CANNOT_START)
            return
        except torch.OutOfMemoryError:
            log.warning("job %s ran out of memory before its first step", start.job_id)
            self._fail(start.job_id, OUT_OF_MEMORY)
            return
        except Exception:
            log.exception("job %s could not start", start.job_id)
            self._fail(start.job_id, WORKER_ERROR)
            return
        finally:
            self._admitting = None
        now = time.monotonic()
        self._running[handle] = _Running(start, began=now, last_sent=now)
        self._busy = self._job_ids()
        size = (spec.width, spec.height)
        if self.options.compile and size not in self._compiled_sizes:
            self._compiled_sizes.add(size)
            self.channel.send(Preparing(start.job_id, COMPILING.code))

    def _load_encoder(self, load: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        """Load the dVAE encoder when a job first needs it, telling that job's card why it waits."""
        if self._admitting is not None:
            self.channel.send(Preparing(self._admitting, LOADING_PICTURE_ENCODER.code))
        return load()

    def _too_big(self, start: StartJob) -> None:
        """Refuse a job that would not fit this worker's memory even alone."""
        spec, room = start.spec, self.admission.room or 0
        need = self.admission.cost(spec)
        log.warning(
            "job %s (%dx%d) needs %.1f GiB and %.1f GiB is left after the models: refused",
            start.job_id,
            spec.width,
            spec.height,
            need / GIB,
            room / GIB,
        )
        values: dict[str, str | int] = {
            "width": spec.width,
            "height": spec.height,
            "need": f"{need / GIB:.1f}",
            "room": f"{max(room, 0) / GIB:.1f}",
        }
        self._fail(start.job_id, JOB_TOO_BIG, values)

    def _fail(
        self, job_id: int, reason: Reason, values: dict[str, str | int] | None = None
    ) -> None:
        with self._lock:
            self._cancelled.discard(job_id)
        self.channel.send(Failed(job_id, reason.code, values or {}))

    def _step(self) -> None:
        try:
            finished = self._batch.step(self._on_step)
        except Exception as error:
            if isinstance(error, torch.OutOfMemoryError):
                reason = OUT_OF_MEMORY_SHARED if len(self._running) > 1 else OUT_OF_MEMORY
            else:
                log.exception("a step of jobs %s failed", list(self._busy))
                reason = WORKER_ERROR
            failed = [entry.start.job_id for entry in self._running.values()]
            self._running.clear()
            self._ended()
            for job_id in failed:
                self._fail(job_id, reason)
            self._batch = self.engine.batch()
            if self.engine.device.type == "cuda":
                torch.cuda.empty_cache()
            return
        for handle, result in finished.items():
            self._done(handle, result)

    def _done(self, handle: int, result: DrawResult) -> None:
        entry = self._running.pop(handle)
        start = entry.start
        self._ended()
        with self._lock:
            self._cancelled.discard(start.job_id)
        ended = "cancelled" if result.cancelled else "finished"
        log.info("job %s %s after %d steps", start.job_id, ended, result.steps)
        screening = self._screen(start, result.image)
        self.channel.send(
            Finished(
                job_id=start.job_id,
                steps=result.steps,
                seconds=result.timings.loop_s,
                cancelled=result.cancelled,
                png_b64=png_to_b64(png_bytes(result.image, png_metadata(result))),
                continue_state=base64.b64encode(pack_state(result.logits)).decode("ascii"),
                timelapse_b64=_timelapse(start.job_id, entry.frames, result.image)
                if start.spec.timelapse
                else None,
                screening=screening,
                timelapse_screening=entry.timelapse_screening(screening)
                if start.spec.timelapse
                else None,
            )
        )

    def _job_ids(self) -> tuple[int, ...]:
        return tuple(entry.start.job_id for entry in self._running.values())

    def _ended(self) -> None:
        """Jobs left the batch."""
        self._busy = self._job_ids()
        if self.metrics is not None:
            self.metrics.ended(self._running)

    def _screen(self, start: StartJob, image: torch.Tensor | Image.Image) -> Scores | None:
        """What screening says of a picture of `start` (a tensor (3, H, W) in [0, 1] on the
        device, or the final picture); None when the job does not screen its pictures, and when
        screening failed (logged without the picture)."""
        spec = start.spec.screening
        if not spec.pictures or self.screener is None:
            return None
        try:
            if isinstance(image, Image.Image):
                image = pixels(image, self.engine.device)
            return self.screener.score(image, spec)
        except Exception:
            log.exception(
                "job %s: screening a picture failed; it goes out unscreened", start.job_id
            )
            return None

    def _on_step(self, info: StepInfo) -> None:
        entry = self._running[info.job_index]
        spec = entry.start.spec
        picture = None
        frame_screening = None
        room = len(entry.frames) < TIMELAPSE_FRAMES
        if spec.timelapse and room and info.step % frame_every(info.total) == 0:
            picture = to_pil(info.image)
            entry.frames.append(scaled(picture))
            frame_screening = self._screen(entry.start, info.image)
            entry.frame_screened(frame_screening)
        now = time.monotonic()
        if entry.first_step_done is None:
            entry.first_step_done = now
        if now - entry.last_sent < spec.progress_every_s and info.step != info.total:
            return
        entry.last_sent = now
        if info.step > 1:
            rate = (info.step - 1) / max(now - entry.first_step_done, 1e-9)
        else:
            rate = 1 / max(now - entry.began, 1e-9)
        if self.metrics is not None:
            self.metrics.reported(info.job_index, info.step, rate, self._running)
        self.channel.send(
            Progress(
                job_id=entry.start.job_id,
                step=info.step,
                total=info.total,
                loss=float(info.loss.item()),
                iterations_per_second=rate,
                png_b64=png_to_b64(png_bytes(to_pil(info.image) if picture is None else picture)),
                screening=self._screen(entry.start, info.image)
                if picture is None
                else frame_screening,
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
