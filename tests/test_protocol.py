"""The bot-worker protocol: every message round-trips; anything else is refused, saying why."""

from __future__ import annotations

import json

import pytest

from generator.contract.protocol import (
    PROTOCOL_VERSION,
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
    ProtocolError,
    Ready,
    StartJob,
    Taken,
    WorkerOptions,
    decode,
    encode,
)

EVERY_MESSAGE: list[Message] = [
    Configure("gpu-1", ModelChoice(offline=True), WorkerOptions(max_batch=4, precision="bf16")),
    StartJob(1, "a cat | a hat:0.5", 42, 300, 512, 256, 2.5, init_state="UERDMQ=="),
    StartJob(2, "ねこ", 0, 1, 64, 64, 10.0, init_latent_file="latents/1.pt"),
    StartJob(3, "a cat", 7, 60, 64, 64, 2.0, timelapse=True),
    StartJob(
        9,
        "",
        1,
        5,
        64,
        64,
        1.0,
        init_image=PictureIn(png_b64="iVBORw0KGgo=", name="a.png", sha256="ab" * 32),
        init_strength=0.25,
        image_prompts=[
            PictureIn(png_b64="iVBORw0KGgo=", name="b.webp", sha256="cd" * 32, weight=-0.5)
        ],
    ),
    CancelJob(3),
    Ready("gpu-1", "cuda:0", 4, "host-a", 4242),
    Heartbeat("gpu-1", [1, 2]),
    Taken(8, "gpu-2", 2),
    Preparing(4, "compiling the networks for 512x512"),
    Progress(5, 10, 300, -0.25, 12.5, "iVBORw0KGgo="),
    Finished(6, 300, 61.5, False, "iVBORw0KGgo=", "UERDMQ=="),
    Finished(6, 300, 61.5, True, "iVBORw0KGgo=", "UERDMQ==", timelapse_b64="UklGRg=="),
    Failed(7, "the GPU ran out of memory"),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: m.kind)
def test_every_message_round_trips_on_one_line(message: Message) -> None:
    line = encode(message)
    assert line.endswith("\n")
    assert "\n" not in line[:-1]
    assert decode(line) == message
    assert decode(line.encode()) == message


def _line(**payload: object) -> str:
    return json.dumps({"v": PROTOCOL_VERSION, **payload})


def _picture(**changes: object) -> dict[str, object]:
    return {"png_b64": "iVBORw0KGgo=", "name": "a.png", "sha256": "ab" * 32, **changes}


def _start(**changes: object) -> str:
    fields = {
        "job_id": 1,
        "prompt": "a cat",
        "seed": 1,
        "iterations": 2,
        "width": 64,
        "height": 64,
        "progress_every_s": 1.0,
    }
    return _line(type="start", **fields, **changes)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            _line(type="cancel", job_id="x"),
            "bad cancel message: job_id: Input should be a valid integer",
        ),
        (_line(type="cancel", job_id="3"), "job_id: Input should be a valid integer"),
        (_line(type="cancel", job_id=True), "job_id: Input should be a valid integer"),
        (_line(type="cancel", job_id=1.5), "job_id: Input should be a valid integer"),
        (
            _line(type="heartbeat", worker_id="w", busy_job_ids=[1, "2"]),
            "busy_job_ids.1: Input should be a valid",
        ),
        (
            _line(type="configure", worker_id="w", models={}, options={"cutouts": 0}),
            "options.cutouts: Input should be greater than or equal to 1",
        ),
        (
            _line(type="configure", worker_id="w", models={}, options={"precision": "int4"}),
            "options.precision: Value error, must be one of auto, fp32, bf16, fp16",
        ),
        (
            _line(type="configure", worker_id="w", models={"gpu": 1}, options={}),
            "models.gpu: Extra inputs are not permitted",
        ),
        (_line(type="failed", job_id=1, reason=None), "reason: Input should be a valid string"),
        (_line(type="cancel", job_id=1, extra=2), "extra: Unexpected keyword argument"),
        (_line(type="cancel"), "job_id: Field required"),
        (_line(type="explode"), "unknown message type 'explode'"),
        (
            _start(init_strength=1.5),
            "bad start message: init_strength: Input should be less than or equal to 1",
        ),
        (_start(image_prompts=[_picture(sha256="not-a-hash")]), "image_prompts.0.sha256: String"),
        (
            _start(image_prompts=[_picture(png_b64="A" * (6 * 2**20))]),
            "image_prompts.0.png_b64: String should have at most 5592408 characters",
        ),
        (_start(image_prompts=[_picture()] * 5), "image_prompts: List should have at most 4"),
        (_start(timelapse="yes"), "timelapse: Input should be a valid boolean"),
        (
            _line(
                type="finished",
                job_id=1,
                steps=1,
                seconds=1.0,
                cancelled=False,
                png_b64="",
                continue_state="",
                timelapse_b64="A" * (25 * 2**20),
            ),
            "timelapse_b64: String should have at most 25165824 characters",
        ),
        (_line(job_id=1), "unknown message type None"),
        (
            '{"v": 2, "type": "cancel", "job_id": 1}',
            f"protocol version 2, expected {PROTOCOL_VERSION}",
        ),
        ('{"type": "cancel", "job_id": 1}', "protocol version None"),
        ("[1, 2]", "not a JSON object"),
        ("hello", "not JSON"),
    ],
)
def test_foreign_lines_are_refused_saying_why(line: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode(line)
    assert reason in str(refused.value)


def test_a_pictures_bytes_stay_out_of_its_repr() -> None:
    picture = PictureIn(png_b64="iVBORw0KGgo=" * 10, name="a.png", sha256="ab" * 32)
    assert "iVBORw0KGgo" not in repr(picture)
    assert "a.png" in repr(picture)
    with pytest.raises(ValueError, match=r"picture 'a\.png' is not valid base64"):
        PictureIn(png_b64="not base64!", name="a.png", sha256="ab" * 32).image()
