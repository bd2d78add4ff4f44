"""The bot-worker protocol: every message round-trips; anything else is refused, saying why."""

from __future__ import annotations

import json

import pytest

from generator.protocol import (
    PROTOCOL_VERSION,
    CancelJob,
    Failed,
    Finished,
    Heartbeat,
    Message,
    Preparing,
    Progress,
    ProtocolError,
    Ready,
    StartJob,
    decode,
    encode,
)

EVERY_MESSAGE: list[Message] = [
    StartJob(1, "a cat | a hat:0.5", 42, 300, 512, 256, 2.5, init_latent="latents/1.pt"),
    StartJob(2, "ねこ", 0, 1, 64, 64, 10.0),
    CancelJob(3),
    Ready("cuda:0"),
    Heartbeat([1, 2]),
    Preparing(4, "compiling the networks for 512x512"),
    Progress(5, 10, 300, -0.25, 12.5, "iVBORw0KGgo="),
    Finished(6, 300, 61.5, False, "iVBORw0KGgo=", "latents/6.pt"),
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
        (_line(type="heartbeat", busy_job_ids=[1, "2"]), "busy_job_ids.1: Input should be a valid"),
        (_line(type="failed", job_id=1, reason=None), "reason: Input should be a valid string"),
        (_line(type="cancel", job_id=1, extra=2), "extra: Unexpected keyword argument"),
        (_line(type="cancel"), "job_id: Field required"),
        (_line(type="explode"), "unknown message type 'explode'"),
        (_line(job_id=1), "unknown message type None"),
        ('{"v": 2, "type": "cancel", "job_id": 1}', "protocol version 2, expected 3"),
        ('{"type": "cancel", "job_id": 1}', "protocol version None"),
        ("[1, 2]", "not a JSON object"),
        ("hello", "not JSON"),
    ],
)
def test_foreign_lines_are_refused_saying_why(line: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode(line)
    assert reason in str(refused.value)
