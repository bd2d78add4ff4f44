"""The worker as the bot's child process: a real process speaking the protocol on its pipes,
tiny models. Only what needs the process is here (the Configure/Ready handshake, a job end to
end, the pipes closing); the core's behaviour is tested in this process in test_worker_core.py.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from generator.contract.protocol import (
    CancelJob,
    Configure,
    Finished,
    Heartbeat,
    Message,
    ModelChoice,
    Progress,
    Ready,
    StartJob,
    WorkerOptions,
    b64_to_png,
    decode,
    encode,
)
from generator.method.latent import STATE_MAGIC

from .conftest import ModelFiles
from .specs import a_spec

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


def _start(
    files: ModelFiles,
    job_id: int,
    iterations: int,
    init_state: str | None = None,
    **changes: object,
) -> StartJob:
    clip_models = (str(files.clip_torchscript),)
    spec = a_spec(**{"iterations": iterations, "clip_models": clip_models, **changes})
    return StartJob(job_id, spec, init_state=init_state)


def test_a_configured_worker_says_ready_and_draws_jobs(
    worker: WorkerProcess, model_files: ModelFiles
) -> None:
    ready = next(worker.until(Ready))
    assert isinstance(ready, Ready)
    assert (ready.worker_id, ready.device, ready.places) == ("test-worker", "cpu", 1)
    assert ready.pid == worker.process.pid
    assert ready.clip_models == [str(model_files.clip_torchscript)]
    worker.send(_start(model_files, 7, 5))
    messages = list(worker.until(Finished))
    progress = [m for m in messages if isinstance(m, Progress)]
    assert [p.step for p in progress] == [1, 2, 3, 4, 5]
    finished = messages[-1]
    assert isinstance(finished, Finished)
    assert (finished.job_id, finished.steps, finished.cancelled) == (7, 5, False)
    with Image.open(io.BytesIO(b64_to_png(finished.png_b64))) as image:
        assert (image.format, image.size) == ("PNG", (64, 64))
    assert base64.b64decode(finished.continue_state).startswith(STATE_MAGIC)
    # A cancellation on stdin reaches the core too: sent first, the job stops before its first
    # step, showing the state it continues from.
    worker.send(CancelJob(8))
    worker.send(_start(model_files, 8, 50, init_state=finished.continue_state))
    continued = list(worker.until(Finished))[-1]
    assert isinstance(continued, Finished)
    assert (continued.job_id, continued.steps, continued.cancelled) == (8, 0, True)


def test_worker_exits_when_the_bot_goes_away(worker: WorkerProcess) -> None:
    next(worker.until(Ready))
    assert worker.process.stdin is not None
    worker.process.stdin.close()
    assert worker.process.wait(timeout=30) == 0


def test_worker_stops_mid_job_when_its_input_closes(
    worker: WorkerProcess, model_files: ModelFiles
) -> None:
    """Every place taken (max batch 1, a long job running): end of input still stops it. The
    heartbeat says which job it draws."""
    next(worker.until(Ready))
    worker.send(_start(model_files, 1, 100000, progress_every_s=3600.0))
    busy = worker.receive()
    while not (isinstance(busy, Heartbeat) and busy.busy_job_ids == [1]):
        busy = worker.receive()
    assert worker.process.stdin is not None
    closed = time.monotonic()
    worker.process.stdin.close()
    assert worker.process.wait(timeout=30) == 0
    assert time.monotonic() - closed < 2
