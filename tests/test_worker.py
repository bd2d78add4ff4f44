"""The worker process speaks the protocol: real process, real generator, tiny models."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image, features

from bot.i18n import notice, render_notice
from generator.contract.protocol import (
    CancelJob,
    Configure,
    Failed,
    Finished,
    Heartbeat,
    Message,
    ModelChoice,
    PictureIn,
    Preparing,
    Progress,
    Ready,
    StartJob,
    WorkerOptions,
    b64_to_png,
    decode,
    encode,
)
from generator.contract.timelapse import FRAME_MS, HOLD_MS
from generator.method.latent import STATE_MAGIC

from .conftest import ModelFiles
from .pictures import picture

pytestmark = pytest.mark.slow


class WorkerProcess:
    """`python -m generator.worker`, configured as the bot does it: a Configure line first."""

    def __init__(self, files: ModelFiles, **options: object) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "generator.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        models = ModelChoice(
            clip=str(files.clip_torchscript),
            decoder=str(files.decoder_pickle),
            encoder=str(files.encoder_pickle),
            device="cpu",
            offline=True,
        )
        settings = WorkerOptions.model_validate({"cutouts": 4, "threads": 1, **options})
        self.send(Configure(worker_id="test-worker", models=models, options=settings))

    def send(self, message: Message) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(encode(message))
        self.process.stdin.flush()

    def receive(self) -> Message:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "worker closed its output"
        return decode(line)

    def until(self, kind: type[Message]) -> Iterator[Message]:
        """Messages up to and including the first of `kind`, heartbeats left out."""
        while True:
            message = self.receive()
            if not isinstance(message, Heartbeat):
                yield message
            if isinstance(message, kind):
                return


@pytest.fixture
def worker(model_files: ModelFiles) -> Iterator[WorkerProcess]:
    process = WorkerProcess(model_files)
    yield process
    process.process.kill()
    process.process.wait()


def _start(job_id: int, iterations: int, **changes: object) -> StartJob:
    values: dict[str, object] = {
        "job_id": job_id,
        "prompt": "a cat",
        "seed": 1,
        "iterations": iterations,
        "width": 64,
        "height": 64,
        "progress_every_s": 0.0,
    }
    values.update(changes)
    return StartJob(**values)  # type: ignore[arg-type]


def test_job_runs_with_progress_and_a_final_picture(worker: WorkerProcess) -> None:
    ready = next(worker.until(Ready))
    assert isinstance(ready, Ready)
    assert (ready.worker_id, ready.device, ready.places) == ("test-worker", "cpu", 1)
    assert ready.pid == worker.process.pid
    worker.send(_start(7, 5))
    messages = list(worker.until(Finished))
    progress = [m for m in messages if isinstance(m, Progress)]
    assert [p.step for p in progress] == [1, 2, 3, 4, 5]
    finished = messages[-1]
    assert isinstance(finished, Finished)
    assert (finished.job_id, finished.steps, finished.cancelled) == (7, 5, False)
    png = b64_to_png(finished.png_b64)
    assert png.startswith(b"\x89PNG")
    assert base64.b64decode(finished.continue_state).startswith(STATE_MAGIC)

    worker.send(_start(8, 2, init_state=finished.continue_state, prompt="a cat | a hat:0.5"))
    continued = list(worker.until(Finished))[-1]
    assert isinstance(continued, Finished)
    assert continued.steps == 2


def test_a_timelapse_job_sends_an_animation_and_a_plain_job_none(worker: WorkerProcess) -> None:
    next(worker.until(Ready))
    worker.send(_start(1, 12, timelapse=True))
    animated = list(worker.until(Finished))[-1]
    assert isinstance(animated, Finished)
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
    worker.send(_start(2, 3))
    plain = list(worker.until(Finished))[-1]
    assert isinstance(plain, Finished)
    assert plain.timelapse_b64 is None
    worker.send(CancelJob(3))
    worker.send(_start(3, 50, timelapse=True))
    cancelled = list(worker.until(Finished))[-1]
    assert isinstance(cancelled, Finished)
    assert (cancelled.steps, cancelled.cancelled) == (0, True)
    assert cancelled.timelapse_b64 is not None  # what it has: the picture it stopped at


def _pixels(png_b64: str) -> bytes:
    with Image.open(io.BytesIO(b64_to_png(png_b64))) as image:
        return image.convert("RGB").tobytes()


def test_a_512_picture_keeps_a_small_state_and_continues_from_the_picture_shown(
    worker: WorkerProcess,
) -> None:
    next(worker.until(Ready))
    worker.send(_start(1, 2, width=512, height=512))
    first = list(worker.until(Finished))[-1]
    assert isinstance(first, Finished)
    assert len(first.continue_state) < 100_000  # what the bot stores: base64 text
    # Cancelled before its first step, the continued job shows where it starts from; its seed
    # differs from the first job's, so only the state can make the pictures equal.
    worker.send(CancelJob(2))
    worker.send(_start(2, 50, seed=99, width=512, height=512, init_state=first.continue_state))
    start = list(worker.until(Finished))[-1]
    assert isinstance(start, Finished)
    assert (start.steps, start.cancelled) == (0, True)
    assert _pixels(start.png_b64) == _pixels(first.png_b64)
    worker.send(CancelJob(3))
    worker.send(_start(3, 50, seed=99, width=512, height=512))
    fresh = list(worker.until(Finished))[-1]
    assert isinstance(fresh, Finished)
    assert _pixels(fresh.png_b64) != _pixels(first.png_b64)


def test_continuing_from_an_earlier_versions_latent_file(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    """Latent files saved before continue states, in the old (1, V, h, w) layout, still load;
    a state for another size, a file that is gone, or garbage fail the job, saying why."""
    next(worker.until(Ready))
    tokens = torch.randint(512, (8, 8), generator=torch.Generator().manual_seed(0))
    old = torch.nn.functional.one_hot(tokens, 512).permute(2, 0, 1)[None].float() * 5
    legacy = tmp_path / "1.pt"
    torch.save(old, legacy)
    worker.send(CancelJob(1))
    worker.send(_start(1, 5, init_latent_file=str(legacy)))
    start = list(worker.until(Finished))[-1]
    assert isinstance(start, Finished)
    assert start.steps == 0
    worker.send(_start(2, 1, init_latent_file=str(legacy)))
    assert isinstance(list(worker.until(Finished))[-1], Finished)
    refusals = {
        3: _start(3, 1, width=128, height=128, init_state=start.continue_state),
        4: _start(4, 1, init_latent_file=str(tmp_path / "gone.pt")),
        5: _start(5, 1, init_state="bm90IGEgc3RhdGU="),
    }
    for job in refusals.values():
        worker.send(job)
    reasons = {}
    for _ in refusals:
        failed = list(worker.until(Failed))[-1]
        assert isinstance(failed, Failed)
        reasons[failed.job_id] = failed.reason
    assert "for a 64x64 picture" in reasons[3]
    assert "no longer saved" in reasons[4]
    assert "not a continue state" in reasons[5]


def test_cancel_while_running_and_bad_jobs_fail_cleanly(worker: WorkerProcess) -> None:
    next(worker.until(Ready))
    worker.send(_start(1, 100000, progress_every_s=0.0))
    first = worker.receive()
    while not isinstance(first, Progress):
        first = worker.receive()
    worker.send(CancelJob(1))
    finished = list(worker.until(Finished))[-1]
    assert isinstance(finished, Finished)
    assert finished.cancelled
    assert 1 <= finished.steps < 100000

    worker.send(_start(2, 3, prompt="word " * 100))
    failed = list(worker.until(Failed))[-1]
    assert isinstance(failed, Failed)
    assert failed.reason.startswith("prompt '{part}' is too long for CLIP")
    assert failed.values == {"part": "word " * 7 + "word…", "most": 75}
    japanese = render_notice("ja", notice(failed.reason, **failed.values))
    assert japanese.startswith(f"プロンプト「{'word ' * 7}word…」は CLIP には長すぎます")

    worker.send(_start(3, 3, width=65))
    assert isinstance(list(worker.until(Failed))[-1], Failed)


def test_worker_exits_when_the_bot_goes_away(worker: WorkerProcess) -> None:
    next(worker.until(Ready))
    assert worker.process.stdin is not None
    worker.process.stdin.close()
    assert worker.process.wait(timeout=30) == 0


def test_worker_stops_mid_job_when_its_input_closes(worker: WorkerProcess) -> None:
    """Every place taken (max batch 1, a long job running): end of input still stops it."""
    next(worker.until(Ready))
    worker.send(_start(1, 100000, progress_every_s=3600.0))
    busy = worker.receive()
    while not (isinstance(busy, Heartbeat) and busy.busy_job_ids == [1]):
        busy = worker.receive()
    assert worker.process.stdin is not None
    closed = time.monotonic()
    worker.process.stdin.close()
    assert worker.process.wait(timeout=30) == 0
    assert time.monotonic() - closed < 2


def test_progress_png_is_a_picture(worker: WorkerProcess, tmp_path: Path) -> None:
    next(worker.until(Ready))
    worker.send(_start(4, 1))
    progress = next(m for m in worker.until(Finished) if isinstance(m, Progress))
    path = tmp_path / "progress.png"
    path.write_bytes(b64_to_png(progress.png_b64))
    with Image.open(path) as image:
        assert image.size == (64, 64)


def test_jobs_share_a_batch_and_draw_what_they_would_alone(model_files: ModelFiles) -> None:
    """With --max-batch 2, a second job joins the running one at a step boundary; a third waits
    for a free place. Each picture is byte for byte the one a worker drawing alone makes."""
    jobs = [
        _start(1, 60, seed=5, prompt="a lighthouse"),
        _start(2, 8, seed=6, prompt="a red bicycle | blurry:-0.5"),
        _start(3, 5, seed=7, width=72),
    ]
    alone_worker = WorkerProcess(model_files)
    batched_worker = WorkerProcess(model_files, max_batch=2)
    try:
        next(alone_worker.until(Ready))
        alone: dict[int, str] = {}
        for job in jobs:
            alone_worker.send(job)
            finished = list(alone_worker.until(Finished))[-1]
            assert isinstance(finished, Finished)
            alone[job.job_id] = finished.png_b64

        next(batched_worker.until(Ready))
        for job in jobs:
            batched_worker.send(job)
        order: list[tuple[str, int, int]] = []
        busy: set[tuple[int, ...]] = set()
        together: dict[int, str] = {}
        while len(together) < len(jobs):
            message = batched_worker.receive()
            if isinstance(message, Heartbeat):
                busy.add(tuple(sorted(message.busy_job_ids)))
            elif isinstance(message, Progress):
                order.append(("progress", message.job_id, message.step))
            elif isinstance(message, Finished):
                order.append(("finished", message.job_id, message.steps))
                together[message.job_id] = message.png_b64
    finally:
        for process in (alone_worker, batched_worker):
            process.process.kill()
            process.process.wait()
    assert together == alone
    # Job 2 ran while job 1 was running, and job 3 only started once job 2 had left.
    first_of = {job: order.index(("progress", job, 1)) for job in (1, 2, 3)}
    assert first_of[2] < order.index(("finished", 1, 60))
    assert order.index(("finished", 2, 8)) < first_of[3]
    assert max(len(ids) for ids in busy) <= 2


def test_compiled_checkpointed_worker_draws(model_files: ModelFiles) -> None:
    """The fast-path switches the bot passes reach the engine and a job still draws to the end."""
    worker = WorkerProcess(model_files, compile=True, checkpointing=True, precision="bf16")
    try:
        next(worker.until(Ready))
        worker.send(_start(1, 4))
        messages = list(worker.until(Finished))
        worker.send(_start(2, 2))
        second = list(worker.until(Finished))
    finally:
        worker.process.kill()
        worker.process.wait()
    # The card can say why the first job of a size waits; the next job of that size does not.
    assert messages[0] == Preparing(1, "compiling the networks")
    assert not any(isinstance(m, Preparing) for m in second)
    finished = messages[-1]
    assert isinstance(finished, Finished)
    assert (finished.steps, finished.cancelled) == (4, False)
    assert b64_to_png(finished.png_b64).startswith(b"\x89PNG")


def test_an_image_job_loads_the_encoder_once_and_records_its_pictures(
    model_files: ModelFiles,
) -> None:
    process = WorkerProcess(model_files)
    try:
        next(process.until(Ready))
        start, steer = PictureIn.of(picture()), PictureIn.of(picture(7))
        process.send(
            _start(1, 3, prompt="", init_image=start, init_strength=1.0, image_prompts=[steer])
        )
        messages = list(process.until(Finished))
        preparing = [m.reason for m in messages if isinstance(m, Preparing)]
        assert preparing == ["loading the picture encoder"]
        finished = messages[-1]
        assert isinstance(finished, Finished)
        assert finished.steps == 3
        with Image.open(io.BytesIO(b64_to_png(finished.png_b64))) as image:
            recorded = image.info
        assert start.sha256 in recorded["init_image"]
        assert steer.sha256 in recorded["image_prompts"]
        # The next image job finds the encoder loaded; a continued one starts from its state.
        process.send(_start(2, 1, prompt="a cat", init_image=start))
        second = list(process.until(Finished))
        process.send(
            _start(3, 1, prompt="", init_state=finished.continue_state, image_prompts=[steer])
        )
        third = list(process.until(Finished))
        assert not any(isinstance(m, Preparing | Failed) for m in second + third)
        assert [m.job_id for m in second + third if isinstance(m, Finished)] == [2, 3]
    finally:
        process.process.kill()
        process.process.wait()
