"""Time-lapses: frames to an animated WebP or GIF, fitted to an upload limit, and the CLI's
--timelapse by the file's suffix."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image, features

from generator.cli.commands import build_parser
from generator.contract.timelapse import (
    FRAME_MS,
    HOLD_MS,
    TIMELAPSE_FRAMES,
    TIMELAPSE_SIDES,
    frame_every,
)
from generator.media import animation
from generator.media.animation import (
    GIF,
    WEBP,
    AnimationError,
    decode_animation,
    encode_animation,
    fit_animation,
)

from .cli_harness import Cli
from .conftest import ModelFiles


def _frames(count: int, side: int, seed: int = 0) -> list[Image.Image]:
    """Noise, which compresses as badly as a drawing's first steps."""
    rng = random.Random(seed)
    return [
        Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)) for _ in range(count)
    ]


def _opened(data: bytes) -> tuple[str, int, tuple[int, int], list[int], int]:
    """Format, frame count, size, each frame's duration and the loop count of an animation."""
    with Image.open(io.BytesIO(data)) as image:
        durations = []
        for index in range(image.n_frames):  # type: ignore[attr-defined]
            image.seek(index)
            image.load()  # WebP reads a frame's duration with its pixels
            durations.append(int(image.info["duration"]))
        return (
            str(image.format),
            image.n_frames,  # type: ignore[attr-defined]
            image.size,
            durations,
            int(image.info.get("loop", -1)),
        )


@pytest.mark.parametrize("fmt", [WEBP, GIF])
def test_frames_become_a_looping_animation_that_holds_the_final_picture(fmt: str) -> None:
    data = encode_animation(_frames(5, 48), fmt)
    kind, count, size, durations, loop = _opened(data)
    assert (kind, count, size, loop) == (fmt, 5, (48, 48), 0)
    assert durations == [FRAME_MS] * 4 + [HOLD_MS]
    assert animation.suffix_of(data) == f".{fmt.lower()}"
    with pytest.raises(ValueError, match="at least one frame"):
        encode_animation([], fmt)


def test_without_a_webp_writer_the_best_format_is_gif(monkeypatch: pytest.MonkeyPatch) -> None:
    assert animation.best_format() == (WEBP if features.check("webp") else GIF)
    monkeypatch.setattr(features, "check", lambda feature: False)
    assert animation.best_format() == GIF
    with pytest.raises(ValueError, match="cannot write WEBP"):
        encode_animation(_frames(2, 16), WEBP)


def test_frames_are_evenly_spaced_and_never_more_than_the_limit() -> None:
    for iterations in (1, 2, 59, 60, 61, 119, 1000, 100_000):
        every = frame_every(iterations)
        kept = iterations // every
        assert 1 <= kept <= TIMELAPSE_FRAMES, iterations
        assert kept >= TIMELAPSE_FRAMES // 2 or kept == iterations, iterations


def test_an_animation_too_big_is_scaled_down_then_thinned_until_it_fits() -> None:
    side = TIMELAPSE_SIDES[0]
    data = encode_animation(_frames(9, side), WEBP if features.check("webp") else GIF)
    assert fit_animation(data, len(data)) is data
    limit = len(data) // 6
    fitted = fit_animation(data, limit)
    assert fitted is not None
    kind, count, size, durations, _ = _opened(fitted)
    assert len(fitted) <= limit
    assert max(size) == TIMELAPSE_SIDES[-1]
    assert 1 < count < 9
    assert durations[-1] == HOLD_MS
    assert sum(durations) == 8 * FRAME_MS + HOLD_MS  # it plays as long as before
    assert kind == _opened(data)[0]
    assert fit_animation(data, 1000) is None  # not even two small frames fit


def test_what_is_not_a_time_lapse_is_refused_before_decoding() -> None:
    with pytest.raises(AnimationError, match="not a WebP or GIF"):
        decode_animation(b"\x89PNG\r\n\x1a\n not really")
    too_many = encode_animation(_frames(TIMELAPSE_FRAMES + 2, 8), GIF)
    with pytest.raises(AnimationError, match=f"{TIMELAPSE_FRAMES + 2} frames"):
        fit_animation(too_many, 10)
    too_wide = encode_animation(_frames(2, TIMELAPSE_SIDES[0] + 8), GIF)
    with pytest.raises(AnimationError, match="not a time-lapse"):
        fit_animation(too_wide, 10)


@pytest.mark.parametrize(
    ("name", "webp", "message"),
    [
        ("t.mp4", True, "expected a file ending .webp or .gif, got 't.mp4'"),
        ("t.webp", False, "this Pillow was built without WebP: use .gif"),
    ],
)
def test_timelapse_files_other_than_webp_or_gif_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    webp: bool,
    message: str,
) -> None:
    monkeypatch.setattr(features, "check", lambda feature: webp)
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["draw", "a cat", "--timelapse", name])
    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert message in said
    assert len(said.strip().splitlines()) == 1


def test_the_cli_writes_webp_or_gif_by_the_suffix_and_refuses_others(
    cli: Cli, model_files: ModelFiles, tmp_path: Path
) -> None:
    models = [
        "--clip-model",
        str(model_files.clip_torchscript),
        "--decoder",
        str(model_files.decoder_pickle),
    ]
    draw = [
        "draw",
        "a cat",
        *("--size", "64", "--cutouts", "4", "--device", "cpu", "--threads", "1"),
        *("--iterations", "8", *models),
    ]
    wanted = {".gif": GIF} | ({".webp": WEBP} if features.check("webp") else {})
    for suffix, fmt in wanted.items():
        out = tmp_path / f"t{suffix}"
        result = cli(*draw, "--out", str(tmp_path / "p.png"), "--timelapse", str(out))
        assert result.code == 0, result.stderr
        kind, count, _, durations, loop = _opened(out.read_bytes())
        assert (kind, count, loop) == (fmt, 9, 0)  # a frame a step, then the final picture
        assert durations[-1] == HOLD_MS
    refused = cli(*draw, "--timelapse", str(tmp_path / "t.mp4"))
    assert refused.code == 2
    assert "expected a file ending .webp or .gif" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "t.mp4").exists()
