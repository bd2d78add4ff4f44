"""The bot-worker protocol: every message round-trips; anything else is refused, saying why."""

from __future__ import annotations

import json

import pytest

from generator.contract.jobs import JobSpec, ParentJob, PictureData, PictureRef
from generator.contract.protocol import (
    PROTOCOL_VERSION,
    CancelJob,
    CheckMeaning,
    Configure,
    Failed,
    Finished,
    Heartbeat,
    MeaningChecked,
    Message,
    ModelChoice,
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
from generator.contract.reasons import (
    COMPILING,
    MISSING_MODEL,
    OUT_OF_MEMORY,
    PROMPT_MEANING,
    PROMPT_TOO_LONG_FOR_CLIP,
    TOO_MANY_CUTOUTS,
)
from generator.contract.screening import BUILTIN_CONCEPTS, Concept, Scores, ScreeningSpec

SPEC = JobSpec(
    prompt="a cat | a hat:0.5",
    seed=42,
    iterations=300,
    width=512,
    height=256,
    quality="normal",
    cutouts=32,
    clip_models=("ViT-B/32",),
    progress_every_s=2.5,
)


def _spec(**changes: object) -> JobSpec:
    """SPEC with `changes`, validated again."""
    return JobSpec.model_validate({**SPEC.model_dump(), **changes})


A_PICTURE = PictureRef(name="a.png", sha256="ab" * 32)
B_PICTURE = PictureRef(name="b.webp", sha256="cd" * 32, weight=-0.5)
SCREENING = ScreeningSpec(
    meaning=True,
    concepts=(Concept(text="spiders", threshold=0.25), Concept(text="蜘蛛", threshold=0.3)),
)
SCORES = Scores(concepts=(0.125, -0.5, *[0.25] * (len(BUILTIN_CONCEPTS) - 2)), learned=0.75)
HIGHEST = Scores(concepts=(0.5,) * len(BUILTIN_CONCEPTS))
EVERY_MESSAGE: list[Message] = [
    Configure("gpu-1", ModelChoice(offline=True), WorkerOptions(max_batch=4, precision="bf16")),
    StartJob(1, _spec(parent=ParentJob(id=9, how="continue")), "UERDMQ=="),
    StartJob(2, _spec(prompt="ねこ", text_encoder="multilingual", screening=SCREENING)),
    StartJob(2, _spec(screening=ScreeningSpec(pictures=False))),
    StartJob(
        3,
        _spec(timelapse=True, auto_stop=5, quality="better", clip_models=("ViT-B/32", "ViT-B/16")),
    ),
    StartJob(
        9,
        _spec(
            prompt="",
            init_image=A_PICTURE,
            init_strength=0.25,
            image_prompts=(B_PICTURE,),
            parent=ParentJob(id=4, how="reroll"),
        ),
        pictures=[
            PictureData(sha256=A_PICTURE.sha256, png_b64="iVBORw0KGgo="),
            PictureData(sha256=B_PICTURE.sha256, png_b64="iVBORw0KGgo="),
        ],
    ),
    CancelJob(3),
    Ready("gpu-1", "cuda:0", 4, "host-a", 4242),
    Heartbeat("gpu-1", [1, 2]),
    Taken(8, "gpu-2", 2),
    Preparing(4, COMPILING.code),
    Progress(5, 10, 300, -0.25, 12.5, "iVBORw0KGgo="),
    Progress(5, 10, 300, -0.25, 12.5, "iVBORw0KGgo=", screening=SCORES),
    Finished(6, 300, 61.5, False, "iVBORw0KGgo=", "UERDMQ=="),
    Finished(6, 300, 61.5, False, "iVBORw0KGgo=", "UERDMQ==", screening=SCORES),
    Finished(
        6,
        300,
        61.5,
        True,
        "iVBORw0KGgo=",
        "UERDMQ==",
        timelapse_b64="UklGRg==",
        screening=SCORES,
        timelapse_screening=HIGHEST,
    ),
    Failed(7, OUT_OF_MEMORY.code),
    Failed(7, MISSING_MODEL.code, {"model": "RN50"}),
    Failed(7, TOO_MANY_CUTOUTS.code, {"cutouts": 64, "most": 32}),
    Failed(7, PROMPT_TOO_LONG_FOR_CLIP.code, {"part": "word word…", "most": 75}),
    Failed(7, PROMPT_MEANING.code, {"concept": "nudity"}),
    CheckMeaning(2**52, "a cat | naked:-1", "multilingual"),
    MeaningChecked(2**52, checked=True, concept="nudity"),
    MeaningChecked(3, checked=True),
    MeaningChecked(3, checked=False),
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
    return {"name": "a.png", "sha256": "ab" * 32, **changes}


def _start(pictures: list[dict[str, object]] | None = None, **changes: object) -> str:
    spec = {**SPEC.model_dump(mode="json"), **changes}
    return _line(type="start", job_id=1, spec=spec, pictures=pictures or [])


def _progress(screening: object) -> str:
    return _line(
        type="progress",
        job_id=1,
        step=1,
        total=2,
        loss=0.0,
        iterations_per_second=1.0,
        png_b64="iVBORw0KGgo=",
        screening=screening,
    )


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
            "bad start message: spec.init_strength: Input should be less than or equal to 1",
        ),
        (
            _start(image_prompts=[_picture(sha256="not-a-hash")]),
            "spec.image_prompts.0.sha256: String",
        ),
        (
            _start(image_prompts=[_picture()] * 5),
            "spec.image_prompts: Tuple should have at most 4 items",
        ),
        (_start(timelapse="yes"), "spec.timelapse: Input should be a valid boolean"),
        (_start(clip_models=[]), "spec.clip_models: Tuple should have at least 1 item"),
        (_start(width=65), "spec.width: Input should be a multiple of 8"),
        (_start(quality="ultra"), "spec.quality: Value error, must be one of draft"),
        (_start(text_encoder="auto"), "spec.text_encoder: Value error, must be one of"),
        (_start(cutouts=0), "spec.cutouts: Input should be greater than or equal to 1"),
        (_start(prompt_extra="x"), "spec.prompt_extra: Extra inputs are not permitted"),
        (
            _start(init_image=_picture(), parent={"id": 3, "how": "continue"}),
            "continues an earlier one or starts from a picture, not both",
        ),
        (
            _start(pictures=[{"sha256": "ab" * 32, "png_b64": "A" * (6 * 2**20)}]),
            "pictures.0.png_b64: String should have at most 5592408 characters",
        ),
        (
            _start(pictures=[{"sha256": "ab" * 32, "png_b64": "A"}] * 6),
            "pictures: List should have at most 5 items",
        ),
        (_start(pictures=[{"sha256": "ab" * 32, "png_b64": ""}]), "pictures.0.png_b64: String"),
        (
            _start(pictures=[{"sha256": "ab" * 32, "png_b64": "A", "name": "a.png"}]),
            "pictures.0.name: Extra inputs are not permitted",
        ),
        (
            _line(type="start", job_id=1, prompt="a cat", seed=1, iterations=2),
            "spec: Field required",
        ),
        (
            _line(
                type="start", job_id=1, spec=SPEC.model_dump(mode="json"), init_latent_file="1.pt"
            ),
            "init_latent_file: Unexpected keyword argument",
        ),
        (
            _line(type="failed", job_id=1, reason="the GPU ran out of memory"),
            "bad failed message: message: Value error, unknown reason 'the GPU ran out of memory'",
        ),
        (
            _line(type="failed", job_id=1, reason="missing_model"),
            "reason 'missing_model' takes ['model'], got []",
        ),
        (
            _line(type="failed", job_id=1, reason="out_of_memory", values={"size": 512}),
            "reason 'out_of_memory' takes no values, got ['size']",
        ),
        (
            _line(type="failed", job_id=1, reason="too_many_cutouts", values={"cutouts": 64}),
            "reason 'too_many_cutouts' takes ['cutouts', 'most'], got ['cutouts']",
        ),
        (
            _line(type="preparing", job_id=1, reason="compiling the networks"),
            "bad preparing message: message: Value error, unknown reason 'compiling the networks'",
        ),
        (
            _line(type="preparing", job_id=1, reason="missing_model"),
            "message: Value error, reason 'missing_model' takes ['model'], got []",
        ),
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
        (
            _progress({"concepts": [0.1, float("nan")]}),
            "bad progress message: screening.concepts.1: Input should be a finite number",
        ),
        (
            _progress({"concepts": [float("inf")]}),
            "screening.concepts.0: Input should be a finite number",
        ),
        (
            _progress({"concepts": [0.1], "learned": 1.5}),
            "screening.learned: Input should be less than or equal to 1",
        ),
        (_progress({"concepts": ["0.1"]}), "screening.concepts.0: Input should be a valid number"),
        (_progress({"learned": 0.5}), "screening.concepts: Field required"),
        (_progress([0.1, 0.2]), "screening: Input should be an object"),
        (
            _line(
                type="finished",
                job_id=1,
                steps=1,
                seconds=1.0,
                cancelled=False,
                png_b64="",
                continue_state="",
                timelapse_screening={"concepts": [0.1], "learned": float("nan")},
            ),
            "bad finished message: timelapse_screening.learned: Input should be a finite number",
        ),
        (
            _start(screening={"pictures": True, "concepts": [{"text": " ", "threshold": 0.2}]}),
            "spec.screening.concepts.0.text: String should have at least 1 character",
        ),
        (
            _start(screening={"concepts": [{"text": "spiders", "threshold": 1.5}]}),
            "spec.screening.concepts.0.threshold: Input should be less than or equal to 1",
        ),
        (_start(screening={"meaning": "yes"}), "spec.screening.meaning: Input should be a valid"),
        (
            _line(type="check_meaning", check_id=1, prompt="a cat", text_encoder="auto"),
            "bad check_meaning message: text_encoder",
        ),
        (
            _line(type="meaning_checked", check_id=1, concept="nudity"),
            "bad meaning_checked message: checked: Field required",
        ),
        (_line(job_id=1), "unknown message type None"),
        (
            '{"v": 2, "type": "cancel", "job_id": 1}',
            f"protocol version 2, expected {PROTOCOL_VERSION}",
        ),
        # A worker from before screening (version 9) is told, not misread.
        ('{"v": 9, "type": "cancel", "job_id": 1}', "protocol version 9, expected 10"),
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
    picture = PictureData(sha256="ab" * 32, png_b64="iVBORw0KGgo=" * 10)
    assert "iVBORw0KGgo" not in repr(picture)
    assert "ab" * 32 in repr(picture)


def test_a_failed_message_with_a_bad_reason_is_not_made() -> None:
    """The worker cannot build a `Failed` that the bot would refuse."""
    with pytest.raises(ValueError, match="unknown reason 'the worker hit an unexpected error'"):
        Failed(1, "the worker hit an unexpected error")
    with pytest.raises(ValueError, match=r"reason 'missing_model' takes \['model'\], got \[\]"):
        Failed(1, MISSING_MODEL.code)
