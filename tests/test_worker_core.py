"""The worker's core in this process, through its Channel: real engine, tiny models, no pipes.

A `Recorder` stands in for the transport: it keeps every message with the jobs the worker drew
when it came, and lets a test wait for one. Its workers screen pictures with the tiny CLIP, as a
real worker does with its main CLIP (tests/test_screening.py checks what screening says). The
worker serves in a thread, as in the child process and the Redis worker; the test feeds it with
`submit`, `cancel`, `abandon` and `close`, as their threads do. The child transport's own
threads (stdin reader, heartbeat, stdout) are tested at the end, on in-memory streams;
tests/test_worker.py keeps the few checks that need a real process.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import pytest
import torch
from PIL import Image, features

from generator.contract.images import ImageInput
from generator.contract.jobs import PictureData, PictureRef
from generator.contract.protocol import (
    CancelJob,
    Failed,
    Finished,
    Heartbeat,
    Message,
    Preparing,
    Progress,
    StartJob,
    WorkerOptions,
    b64_to_png,
    encode,
    png_to_b64,
)
from generator.contract.reasons import (
    CANNOT_START,
    COMPILING,
    JOB_TOO_BIG,
    LOADING_PICTURE_ENCODER,
    MISSING_MODEL,
    OUT_OF_MEMORY,
    OUT_OF_MEMORY_SHARED,
    PROMPT_EMPTY,
    PROMPT_TOO_LONG_FOR_CLIP,
    PROMPT_WEIGHT_NOT_FINITE,
    STATE_UNUSABLE,
    TOO_MANY_CUTOUTS,
    WAITING_FOR_MEMORY,
    WORKER_ERROR,
)
from generator.contract.timelapse import FRAME_MS, HOLD_MS
from generator.method.engine import Batch
from generator.method.latent import STATE_MAGIC
from generator.method.screening import Screener
from generator.models.loaders import Models, load_encoder
from generator.worker import child
from generator.worker.admission import GIB, Admission, dearest_job
from generator.worker.core import Worker

from .conftest import ModelFiles
from .pictures import picture
from .specs import a_spec

M = TypeVar("M", bound=Message)
WAIT_S = 120.0  # two shared cores: a job of a few steps takes well under a second alone


class Recorder:
    """The worker's channel: every message in order, each with `worker.busy` as it came."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.busy: list[tuple[int, ...]] = []
        self.worker: Worker | None = None
        self._arrived = threading.Condition()

    def send(self, message: Message) -> None:
        with self._arrived:
            self.messages.append(message)
            self.busy.append(self.worker.busy if self.worker is not None else ())
            self._arrived.notify_all()

    def of(self, job_id: int) -> list[Message]:
        """What was sent about job `job_id`, in order."""
        with self._arrived:
            return [m for m in self.messages if getattr(m, "job_id", None) == job_id]

    def wait_for(
        self, kind: type[M], job_id: int, check: Callable[[M], bool] = lambda _: True
    ) -> M:
        """The first message of `kind` about `job_id` that passes `check`, once it has come."""
        deadline = time.monotonic() + WAIT_S
        with self._arrived:
            while True:
                for message in self.messages:
                    if (
                        isinstance(message, kind)
                        and getattr(message, "job_id", None) == job_id
                        and check(message)
                    ):
                        return message
                left = deadline - time.monotonic()
                assert left > 0, f"no {kind.__name__} for job {job_id}: {self.messages}"
                self._arrived.wait(left)


@dataclass
class Served:
    """A worker on the tiny models, its recorder, and the thread that serves it once started."""

    worker: Worker
    channel: Recorder
    clip: str  # the CLIP model it holds
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.worker.serve, daemon=True, name="serve")

    def start(self) -> Served:
        self.thread.start()
        return self

    def job(
        self,
        job_id: int,
        iterations: int,
        *,
        init_state: str | None = None,
        pictures: tuple[ImageInput, ...] = (),
        **changes: object,
    ) -> StartJob:
        """Job `job_id`, 64x64 with 2 cutouts and a progress report every step unless
        `changes` say otherwise; `pictures` travel with it."""
        data = [PictureData(sha256=p.sha256, png_b64=png_to_b64(p.png)) for p in pictures]
        spec = a_spec(**{"iterations": iterations, "clip_models": (self.clip,), **changes})
        return StartJob(job_id, spec, init_state=init_state, pictures=data)

    def draw(self, start: StartJob) -> Finished:
        """Submit `start` and wait for its `Finished`."""
        self.worker.submit(start)
        return self.channel.wait_for(Finished, start.job_id)

    def stopped(self) -> bool:
        """Whether `serve` returned (within a few seconds)."""
        self.thread.join(timeout=10)
        return not self.thread.is_alive()


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(tiny_models: Models, model_files: ModelFiles) -> Iterator[ServeFactory]:
    """Makes workers: 4 cutouts at most, other `WorkerOptions` as given, screening with the tiny
    CLIP unless given another `screener` (or None); closed afterwards."""
    made: list[Served] = []
    tiny_screener = Screener.for_models(tiny_models)

    def make(screener: Screener | None = tiny_screener, **options: object) -> Served:
        channel = Recorder()
        encoder = partial(load_encoder, str(model_files.encoder_pickle), device=torch.device("cpu"))
        worker = Worker(
            tiny_models,
            channel,
            WorkerOptions.model_validate({"cutouts": 4, "threads": 1, **options}),
            picture_encoder=encoder,
            screener=screener,
        )
        channel.worker = worker
        made.append(Served(worker, channel, tiny_models.clip_names[0]))
        return made[-1]

    yield make
    for served in made:
        served.worker.close()
        if served.thread.is_alive():
            assert served.stopped(), "the worker did not stop when closed"


def _pixels(png_b64: str) -> bytes:
    with Image.open(io.BytesIO(b64_to_png(png_b64))) as image:
        return image.convert("RGB").tobytes()


# -- drawing ------------------------------------------------------------------------------------


def test_a_job_reports_each_step_and_finishes_with_its_picture(serve: ServeFactory) -> None:
    served = serve().start()
    assert served.worker.busy == ()
    finished = served.draw(served.job(7, 5, cutouts=3))
    progress = [m for m in served.channel.of(7) if isinstance(m, Progress)]
    assert [(p.step, p.total) for p in progress] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert all(p.iterations_per_second > 0 for p in progress)
    with Image.open(io.BytesIO(b64_to_png(progress[0].png_b64))) as image:
        assert (image.format, image.size) == ("PNG", (64, 64))
    # Busy while it drew, from its first report to its last; free once it had finished.
    assert set(served.channel.busy[:-1]) == {(7,)}
    assert served.channel.busy[-1] == ()
    assert served.worker.busy == ()
    assert (finished.job_id, finished.steps, finished.cancelled) == (7, 5, False)
    assert finished.seconds > 0
    assert finished.timelapse_b64 is None
    with Image.open(io.BytesIO(b64_to_png(finished.png_b64))) as image:
        assert (image.format, image.size) == ("PNG", (64, 64))
        assert image.info["prompt"] == "a cat"
        assert '"cutouts": 3' in image.info["settings"]
    assert base64.b64decode(finished.continue_state).startswith(STATE_MAGIC)


def test_progress_comes_at_most_every_progress_every_s_and_always_at_the_end(
    serve: ServeFactory,
) -> None:
    served = serve().start()
    served.draw(served.job(1, 6, progress_every_s=3600.0))
    assert [m.step for m in served.channel.of(1) if isinstance(m, Progress)] == [6]


def test_a_timelapse_job_sends_an_animation_and_a_plain_job_none(serve: ServeFactory) -> None:
    served = serve().start()
    animated = served.draw(served.job(1, 12, timelapse=True))
    assert animated.timelapse_b64 is not None
    with Image.open(io.BytesIO(b64_to_png(animated.timelapse_b64))) as image:
        assert image.format == ("WEBP" if features.check("webp") else "GIF")
        assert image.info["loop"] == 0
        durations = []
        for index in range(image.n_frames):  # type: ignore[attr-defined]
            image.seek(index)
            image.load()
            durations.append(image.info["duration"])
    # A frame each step (12 iterations keep all), then the final picture held for a second.
    assert durations == [FRAME_MS] * 12 + [HOLD_MS]
    assert served.draw(served.job(2, 3)).timelapse_b64 is None
    served.worker.cancel(3)  # before it starts: it stops before its first step
    cancelled = served.draw(served.job(3, 50, timelapse=True))
    assert (cancelled.steps, cancelled.cancelled) == (0, True)
    assert cancelled.timelapse_b64 is not None  # what it has: the picture it stopped at


def test_a_job_continues_from_a_finished_jobs_state(serve: ServeFactory) -> None:
    """Cancelled before its first step, a continued job shows where it starts from; its seed
    differs from the first job's, so only the state can make the pictures equal."""
    served = serve().start()
    first = served.draw(served.job(1, 3))
    served.worker.cancel(2)
    start = served.draw(served.job(2, 50, seed=99, init_state=first.continue_state))
    assert (start.steps, start.cancelled) == (0, True)
    assert _pixels(start.png_b64) == _pixels(first.png_b64)
    served.worker.cancel(3)
    fresh = served.draw(served.job(3, 50, seed=99))
    assert _pixels(fresh.png_b64) != _pixels(first.png_b64)
    # And it goes on from there, with other words.
    state = first.continue_state
    continued = served.draw(served.job(4, 2, prompt="a cat | a hat:0.5", init_state=state))
    assert (continued.steps, continued.cancelled) == (2, False)


@pytest.mark.slow
def test_a_512_picture_keeps_a_small_state_and_continues_from_the_picture_shown(
    serve: ServeFactory,
) -> None:
    served = serve().start()
    served.worker.cancel(1)
    first = served.draw(served.job(1, 5, width=512, height=512))
    assert len(first.continue_state) < 100_000  # what the bot stores: base64 text
    served.worker.cancel(2)
    again = served.draw(
        served.job(2, 5, seed=99, width=512, height=512, init_state=first.continue_state)
    )
    assert _pixels(again.png_b64) == _pixels(first.png_b64)


@pytest.mark.slow
def test_jobs_share_a_batch_and_draw_what_they_would_alone(serve: ServeFactory) -> None:
    """With max_batch 2, a second job joins the running one at a step boundary; a third waits
    for a free place. Each picture is byte for byte the one a worker drawing alone makes."""
    alone_worker = serve().start()
    jobs = [
        alone_worker.job(1, 60, seed=5, prompt="a lighthouse"),
        alone_worker.job(2, 8, seed=6, prompt="a red bicycle | blurry:-0.5"),
        alone_worker.job(3, 5, seed=7, width=72),
    ]
    alone = {job.job_id: alone_worker.draw(job).png_b64 for job in jobs}
    batched = serve(max_batch=2).start()
    batched.worker.submit(jobs[0])
    batched.channel.wait_for(Progress, 1)
    for job in jobs[1:]:
        batched.worker.submit(job)
    together = {job.job_id: batched.channel.wait_for(Finished, job.job_id) for job in jobs}
    assert {job_id: f.png_b64 for job_id, f in together.items()} == alone
    order = [
        (type(m).__name__, m.job_id, m.step if isinstance(m, Progress) else m.steps)
        for m in batched.channel.messages
        if isinstance(m, Progress | Finished)
    ]
    # Job 2 joined job 1 as it ran, and job 3 only started once job 2 had left.
    first_of = {job: order.index(("Progress", job, 1)) for job in (1, 2, 3)}
    assert first_of[1] < first_of[2] < order.index(("Finished", 1, 60))
    assert order.index(("Finished", 2, 8)) < first_of[3]
    assert (1, 2) in batched.channel.busy
    assert max(len(ids) for ids in batched.channel.busy) == 2


@pytest.mark.slow
def test_a_compiled_checkpointed_worker_says_so_and_draws(serve: ServeFactory) -> None:
    """The fast-path switches reach the engine and a job still draws to the end; the card can
    say why the first job of a size waits, and the next job of that size does not wait."""
    served = serve(compile=True, checkpointing=True, precision="bf16").start()
    finished = served.draw(served.job(1, 4))
    assert served.channel.of(1)[0] == Preparing(1, COMPILING.code)
    assert (finished.steps, finished.cancelled) == (4, False)
    assert b64_to_png(finished.png_b64).startswith(b"\x89PNG")
    served.draw(served.job(2, 2))
    assert not any(isinstance(m, Preparing) for m in served.channel.of(2))


def test_an_image_job_loads_the_encoder_once_and_records_its_pictures(
    serve: ServeFactory,
) -> None:
    served = serve().start()
    start, steer = picture(), picture(7)
    start_ref = PictureRef(name=start.name, sha256=start.sha256)
    steer_ref = PictureRef(name=steer.name, sha256=steer.sha256, weight=0.5)
    job = served.job(
        1,
        3,
        prompt="",
        init_image=start_ref,
        init_strength=1.0,
        image_prompts=(steer_ref,),
        pictures=(start, steer),
    )
    finished = served.draw(job)
    preparing = [m for m in served.channel.of(1) if isinstance(m, Preparing)]
    assert preparing == [Preparing(1, LOADING_PICTURE_ENCODER.code)]
    assert served.channel.of(1)[0] == preparing[0]  # before its first step
    assert finished.steps == 3
    with Image.open(io.BytesIO(b64_to_png(finished.png_b64))) as image:
        recorded = image.info
    assert start.sha256 in recorded["init_image"]
    assert steer.sha256 in recorded["image_prompts"]
    assert '"weight": 0.5' in recorded["image_prompts"]
    # The next image job finds the encoder loaded; a continued one starts from its state.
    served.draw(served.job(2, 1, init_image=start_ref, pictures=(start,)))
    served.draw(
        served.job(
            3,
            1,
            prompt="",
            init_state=finished.continue_state,
            image_prompts=(steer_ref,),
            pictures=(steer,),
        )
    )
    later = served.channel.of(2) + served.channel.of(3)
    assert not any(isinstance(m, Preparing | Failed) for m in later)


# -- cancelling, abandoning, closing ------------------------------------------------------------


def _first_progress(served: Served, job_id: int) -> Progress:
    return served.channel.wait_for(Progress, job_id)


@pytest.mark.slow
def test_a_job_with_auto_stop_ends_at_a_window_once_it_stops_improving(
    serve: ServeFactory,
) -> None:
    served = serve().start()
    stopped = served.draw(served.job(1, 400, auto_stop=1))
    assert 20 <= stopped.steps < 400
    assert stopped.steps % 10 == 0  # at the end of a window
    assert not stopped.cancelled
    assert served.draw(served.job(2, 30)).steps == 30  # without it, every iteration


def test_a_job_cancelled_mid_run_stops_at_a_step_boundary_with_what_it_drew(
    serve: ServeFactory,
) -> None:
    served = serve().start()
    served.worker.submit(served.job(1, 100_000))
    _first_progress(served, 1)
    assert served.worker.busy == (1,)
    served.worker.cancel(1)
    finished = served.channel.wait_for(Finished, 1)
    assert finished.cancelled
    assert 1 <= finished.steps < 100_000
    # It stopped between two steps: the last step it reported is the step it ended at.
    steps = [m.step for m in served.channel.of(1) if isinstance(m, Progress)]
    assert steps == list(range(1, finished.steps + 1))
    assert b64_to_png(finished.png_b64).startswith(b"\x89PNG")
    assert served.channel.busy[-1] == ()  # no longer drawn as it said so
    # The worker goes on; the cancellation touched only that job.
    assert not served.draw(served.job(2, 2)).cancelled


def test_an_abandoned_job_ends_without_a_word(serve: ServeFactory) -> None:
    """Another worker took the jobs over: the running one and the waiting one are dropped,
    and neither says anything more."""
    served = serve().start()
    served.worker.submit(served.job(1, 100_000))
    _first_progress(served, 1)
    served.worker.submit(served.job(2, 100_000))  # waits: max_batch 1
    served.worker.abandon(2)
    served.worker.abandon(1)
    finished = served.draw(served.job(3, 2))
    assert not finished.cancelled
    assert not any(isinstance(m, Finished | Failed) for m in served.channel.of(1))
    assert served.channel.of(2) == []
    assert served.worker.busy == ()
    # An abandonment is of the job as it was held: the same job delivered again draws.
    assert served.draw(served.job(2, 2)).steps == 2


def test_close_while_idle_returns_at_once(serve: ServeFactory) -> None:
    served = serve().start()
    closed = time.monotonic()
    served.worker.close()
    assert served.stopped()
    assert time.monotonic() - closed < 2
    assert served.channel.messages == []


def test_close_while_drawing_returns_at_the_next_step_and_says_nothing_more(
    serve: ServeFactory,
) -> None:
    served = serve().start()
    served.worker.submit(served.job(1, 100_000, progress_every_s=3600.0))
    served.worker.submit(served.job(2, 3))  # waits for the place job 1 holds
    deadline = time.monotonic() + WAIT_S
    while served.worker.busy != (1,):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    closed = time.monotonic()
    served.worker.close()
    assert served.stopped()
    assert time.monotonic() - closed < 2
    assert served.channel.messages == []  # no report came yet, and none comes now


# -- refusals and failures ----------------------------------------------------------------------


def _state(served: Served) -> str:
    """A 64x64 job's continue state."""
    served.worker.cancel(100)
    return served.draw(served.job(100, 1)).continue_state


Refused = Callable[[Served, ModelFiles], StartJob]
REFUSALS: dict[str, tuple[Refused, str, dict[str, str | int]]] = {
    # job 1 as it comes -> the reason and the values its Failed carries
    "a model it does not hold": (
        lambda s, files: s.job(1, 3, clip_models=(s.clip, str(files.clip_48_torchscript))),
        MISSING_MODEL.code,
        {"model": "clip-48.pt"},
    ),
    "more cutouts than it draws": (
        lambda s, _: s.job(1, 3, cutouts=5),
        TOO_MANY_CUTOUTS.code,
        {"cutouts": 5, "most": 4},
    ),
    "a state that is not base64": (
        lambda s, _: s.job(1, 3, init_state="not base64!"),
        STATE_UNUSABLE.code,
        {},
    ),
    "a state that is not one": (
        lambda s, _: s.job(1, 3, init_state="bm90IGEgc3RhdGU="),
        STATE_UNUSABLE.code,
        {},
    ),
    "a state for another size": (
        lambda s, _: s.job(1, 3, width=128, height=128, init_state=_state(s)),
        STATE_UNUSABLE.code,
        {},
    ),
    "a prompt too long for CLIP": (
        lambda s, _: s.job(1, 3, prompt="word " * 100),
        PROMPT_TOO_LONG_FOR_CLIP.code,
        {"part": "word " * 7 + "word…", "most": 75},
    ),
    "a weight that is not finite": (
        lambda s, _: s.job(1, 3, prompt="a cat:inf"),
        PROMPT_WEIGHT_NOT_FINITE.code,
        {"weight": "inf"},
    ),
    "nothing to draw": (lambda s, _: s.job(1, 3, prompt=" "), PROMPT_EMPTY.code, {}),
    "a picture whose bytes did not come": (
        lambda s, _: s.job(1, 3, init_image=PictureRef(name="gone.png", sha256="ab" * 32)),
        CANNOT_START.code,
        {},
    ),
    "a text encoder it did not load": (
        lambda s, _: s.job(1, 3, text_encoder="multilingual"),
        CANNOT_START.code,
        {},
    ),
}


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=list(REFUSALS))
def test_a_job_it_cannot_draw_fails_with_a_code_and_its_values(
    serve: ServeFactory,
    model_files: ModelFiles,
    caplog: pytest.LogCaptureFixture,
    refusal: tuple[Refused, str, dict[str, str | int]],
) -> None:
    job, reason, values = refusal
    served = serve().start()
    start = job(served, model_files)
    with caplog.at_level(logging.INFO, logger="pseudo_dalle.worker"):
        served.worker.submit(start)
        failed = served.channel.wait_for(Failed, 1)
    assert (failed.reason, failed.values) == (reason, values)
    assert served.channel.of(1) == [failed]
    if reason == CANNOT_START.code:  # the member cannot fix it: the operator reads why
        assert any(r.levelno == logging.ERROR for r in caplog.records)
    # The worker goes on drawing.
    assert served.draw(served.job(2, 1)).steps == 1


def test_a_job_its_memory_cannot_hold_even_alone_is_refused_saying_what_it_needs(
    serve: ServeFactory, tiny_models: Models
) -> None:
    counted = Admission(tiny_models, WorkerOptions(cutouts=4), "fp32")
    clip = tiny_models.clip_names[0]
    small = a_spec(width=64, height=64, cutouts=2, clip_models=(clip,))
    big = a_spec(width=128, height=128, cutouts=2, clip_models=(clip,))
    room = (counted.cost(small) + counted.cost(big)) / 2
    served = serve(memory_limit_gb=(counted.held + room) / GIB, precision="fp32").start()
    served.worker.submit(served.job(1, 2, width=128, height=128))
    failed = served.channel.wait_for(Failed, 1)
    assert failed.reason == JOB_TOO_BIG.code
    assert failed.values == {
        "width": 128,
        "height": 128,
        "need": f"{counted.cost(big) / GIB:.1f}",
        "room": f"{room / GIB:.1f}",
    }
    assert served.channel.of(1) == [failed]
    assert served.draw(served.job(2, 1)).steps == 1


@pytest.mark.slow
def test_a_job_that_fits_only_alone_waits_for_the_one_drawn_to_finish(
    serve: ServeFactory, tiny_models: Models
) -> None:
    """Two places (two of the dearest quality's 512x512 jobs fit), but a 768x512 pan does not
    fit beside a 512x512 drawing: it starts once that one has finished, and a small job behind
    it waits its turn, then is drawn beside the pan."""
    counted = Admission(tiny_models, WorkerOptions(cutouts=4), "fp32")
    clip = tiny_models.clip_names[0]
    square = a_spec(width=512, height=512, cutouts=2, clip_models=(clip,))
    pan = a_spec(width=768, height=512, cutouts=2, clip_models=(clip,))
    _, dearest = dearest_job(tiny_models, WorkerOptions(cutouts=4), "fp32")
    room = max(2 * dearest, counted.cost(square) + counted.cost(pan) - 2**20)
    assert counted.cost(square) + counted.cost(pan) > room
    served = serve(memory_limit_gb=(counted.held + room) / GIB, max_batch=4, precision="fp32")
    assert served.worker.max_batch == 2
    served.start()
    for start in (
        served.job(1, 3, width=512, height=512),
        served.job(2, 2, width=768, height=512),
        served.job(3, 1),
    ):
        served.worker.submit(start)
    for job_id in (1, 2, 3):
        served.channel.wait_for(Finished, job_id)
    told = {
        job_id: [m for m in served.channel.of(job_id) if isinstance(m, Preparing)]
        for job_id in (1, 2, 3)
    }
    # The pan's card says once why it waits; the others never waited first in line.
    assert told == {1: [], 2: [Preparing(2, WAITING_FOR_MEMORY.code)], 3: []}
    drawn_together = {tuple(sorted(busy)) for busy in served.channel.busy}
    assert (2, 3) in drawn_together  # the small one fits beside the pan
    assert not any({1, 2} <= set(busy) or {1, 3} <= set(busy) for busy in drawn_together)


def test_a_step_that_fails_fails_the_jobs_it_drew_and_the_worker_goes_on(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of memory with several jobs in the batch says the batch may be why; any other error
    is logged with its traceback and reported as the worker's."""
    errors: list[Exception] = [torch.OutOfMemoryError("out"), torch.OutOfMemoryError("out")]
    errors.append(RuntimeError("a kernel broke"))
    step = Batch.step

    def failing(batch: Batch, *args: object, **kwargs: object) -> object:
        if errors:
            raise errors.pop(0)
        return step(batch, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Batch, "step", failing)
    served = serve(max_batch=2)
    served.worker.submit(served.job(1, 5))
    served.worker.submit(served.job(2, 5))
    served.start()
    assert served.channel.wait_for(Failed, 1).reason == OUT_OF_MEMORY_SHARED.code
    assert served.channel.wait_for(Failed, 2).reason == OUT_OF_MEMORY_SHARED.code
    served.worker.submit(served.job(3, 5))
    assert served.channel.wait_for(Failed, 3).reason == OUT_OF_MEMORY.code
    with caplog.at_level(logging.ERROR, logger="pseudo_dalle.worker"):
        served.worker.submit(served.job(4, 5))
        assert served.channel.wait_for(Failed, 4).reason == WORKER_ERROR.code
    assert any(r.exc_info is not None for r in caplog.records)
    assert served.draw(served.job(5, 2)).steps == 2
    assert served.worker.busy == ()


# -- the child transport's threads --------------------------------------------------------------


class _Calls:
    """Stands in for the worker: records what the reader asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.busy: tuple[int, ...] = (3,)

    def submit(self, start: StartJob) -> None:
        self.calls.append(("submit", start.job_id))

    def cancel(self, job_id: int) -> None:
        self.calls.append(("cancel", job_id))

    def close(self) -> None:
        self.calls.append(("close", None))


def test_the_child_reads_jobs_and_cancellations_and_end_of_input_means_the_bot_is_gone(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    job = serve().job(5, 1)
    lines = [encode(job), "not json\n", encode(CancelJob(5)), encode(Heartbeat("w", []))]
    worker, gone = _Calls(), threading.Event()
    with caplog.at_level(logging.ERROR, logger="pseudo_dalle.worker"):
        child.read_commands(io.StringIO("".join(lines)), worker, gone)  # type: ignore[arg-type]
    assert worker.calls == [("submit", 5), ("cancel", 5)]
    assert gone.is_set()
    logged = [r.getMessage() for r in caplog.records]
    assert any("ignoring a bad line from the bot: not JSON" in line for line in logged)
    assert any("ignoring a heartbeat message" in line for line in logged)


def test_the_child_beats_with_what_it_draws_until_the_bot_is_gone_then_closes() -> None:
    out = io.StringIO()
    channel, worker = child._Stdout(out), _Calls()
    beating = threading.Thread(target=child.beat, args=(channel, worker, "w"))
    beating.start()
    deadline = time.monotonic() + 10
    while not out.getvalue():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    channel.gone.set()
    beating.join(timeout=10)
    assert not beating.is_alive()
    assert out.getvalue().splitlines()[0] == encode(Heartbeat("w", [3])).strip()
    assert worker.calls == [("close", None)]


def test_the_child_channel_notes_a_closed_output_as_the_bot_gone() -> None:
    out = io.StringIO()
    channel = child._Stdout(out)
    channel.send(CancelJob(1))
    assert out.getvalue() == encode(CancelJob(1))
    out.close()
    channel.send(CancelJob(2))
    assert channel.gone.is_set()
