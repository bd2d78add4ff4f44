"""`pseudo-dalle` as a person runs it, with tiny model files given by path.

Most cases call `main(argv)` in this process: a real process costs a torch import (seconds) per
case and hides the CLI's lines from coverage. A few stay real processes, because what they test
belongs to a process: the exit code the shell sees from ``python -m generator``, a stderr with
nothing but the CLI's line (no warning the test run would swallow), and Ctrl-C, a signal sent to
the process while it draws.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from generator.method.output import read_png_text

from .cli_harness import Cli
from .conftest import FileServer, ModelFiles
from .pictures import encoded, noise, png_claiming

SUMMARY = re.compile(
    r"^(done|stopped): (\d+)/(\d+) iterations in [\d.]+ s \(([\d.]+) it/s, (?:fp32|bf16|fp16), "
    r"(?:clip|multilingual) text encoder\), "
    r"loss (-?[\d.]+) -> (-?[\d.]+), seed (\d+), saved (.+)$",
    re.MULTILINE,
)


def _process(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _model_args(files: ModelFiles) -> list[str]:
    return ["--clip-model", str(files.clip_torchscript), "--decoder", str(files.decoder_pickle)]


def _draw_args(files: ModelFiles, out: Path, *extra: str) -> list[str]:
    return [
        "draw",
        "an image of the music",
        "--size",
        "64",
        "--cutouts",
        "8",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--threads",
        "1",
        *_model_args(files),
        *extra,
    ]


@pytest.mark.slow
def test_draw_is_reproducible_and_the_loss_falls(
    cli: Cli, model_files: ModelFiles, tmp_path: Path
) -> None:
    # 20 steps: the tiny models' loss falls to a fifth by then, in fp32 and bf16 alike.
    first = cli(*_draw_args(model_files, tmp_path / "a.png", "--iterations", "20", "--seed", "42"))
    assert first.code == 0, first.stderr
    summary = SUMMARY.search(first.stdout)
    assert summary, first.stdout
    status, steps, total, rate, start_loss, end_loss, seed, saved = summary.groups()
    assert (status, steps, total, seed, saved) == (
        "done",
        "20",
        "20",
        "42",
        str(tmp_path / "a.png"),
    )
    assert float(rate) > 0
    assert float(end_loss) < float(start_loss)

    with Image.open(tmp_path / "a.png") as image:
        assert image.size == (64, 64)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~umask  # as any file made
    text = read_png_text(tmp_path / "a.png")
    assert text["prompt"] == "an image of the music"
    assert text["seed"] == "42"
    assert '"cutouts": 8' in text["settings"]

    again = cli(*_draw_args(model_files, tmp_path / "b.png", "--iterations", "20", "--seed", "42"))
    other = cli(*_draw_args(model_files, tmp_path / "c.png", "--iterations", "20", "--seed", "43"))
    assert again.code == other.code == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()
    spread = cli(
        *_draw_args(
            model_files,
            tmp_path / "d.png",
            "--iterations",
            "20",
            "--seed",
            "42",
            "--relaxation",
            "positions",
        )
    )
    assert spread.code == 0, spread.stderr
    assert '"relaxation": "positions"' in read_png_text(tmp_path / "d.png")["settings"]
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "d.png").read_bytes()


def test_non_square_size_progress_frames_and_timelapse(
    cli: Cli, model_files: ModelFiles, tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    result = cli(
        *_draw_args(
            model_files,
            tmp_path / "wide.png",
            "--iterations",
            "6",
            "--size",
            "128x64",
            "--save-every",
            "2",
            "--progress-dir",
            str(frames),
            "--timelapse",
            str(tmp_path / "t.gif"),
        )
    )
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in frames.iterdir()) == [
        "step-000002.png",
        "step-000004.png",
        "step-000006.png",
    ]
    with Image.open(tmp_path / "wide.png") as image:
        assert image.size == (128, 64)
    with Image.open(tmp_path / "t.gif") as gif:
        assert gif.n_frames == 4  # type: ignore[attr-defined]
        assert gif.size == (128, 64)


def test_help_documents_every_option(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # The width a pipe gets, so that the wrapping (which may break "Ctrl-C" at its hyphen)
    # does not depend on the terminal the tests run in.
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("draw", "--help")
    assert result.code == 0
    for option in (
        "--iterations",
        "--size",
        "--seed",
        "--out",
        "--cutouts",
        "--lr",
        "--clip-model",
        "--decoder",
        "--device",
        "--save-every",
        "--progress-dir",
        "--timelapse",
        "--offline",
        "--cache-dir",
        "--temperature",
        "--temperature-end",
        "--rotation",
        "--flip",
        "--noise",
    ):
        assert option in result.stdout, option
    assert "Ctrl-C" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["draw", "a cat", "--size", "500"], "multiples of 8 from 64 to 1024"),
        (["draw", "a cat", "--iterations", "0"], "must be at least 1"),
        (["draw", "a cat", "--iterations", "many"], "expected a whole number"),
        (["draw", "a cat", "--iterations", "200000"], "iterations must be from 1 to 100000"),
        (["draw", "a cat", "--seed", "-3"], "seed must be from 0"),
        (["draw", "a cat", "--lr", "-1"], "lr must be in [0, 10], got -1.0"),
        (["draw", "a cat", "--lr-drop", "1.5"], "argument --lr-drop: must be between 0 and 1"),
        (["draw", "a cat", "--auto-stop", "0"], "argument --auto-stop: must be at least 1"),
        (["draw", "a cat", "--cut-schedule", "random"], "invalid choice: 'random'"),
        (["draw", "a cat", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["draw", "   "], "prompt is empty"),
        (["draw", "word " * 90], "too long for CLIP"),
        (["draw", "a cat", "--progress-dir", "frames"], "--progress-dir needs --save-every"),
        (["draw"], "give a PROMPT, an --image-prompt, or both"),
        (["draw", "a cat", "--init-strength", "1.5"], "argument --init-strength: must be from 0"),
        (["draw", "a cat", "--image-prompt", "x.png:0"], "a non-zero number from -100 to 100"),
        (["draw", "a cat", "--init-image", "/nonexistent/x.png"], "cannot read /nonexistent"),
        (["paint", "a cat"], "invalid choice: 'paint'"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args, "--clip-model", "/nonexistent/clip.pt")
    assert result.code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_offline_without_weights_says_where_to_put_them(
    cli: Cli, model_files: ModelFiles, tmp_path: Path
) -> None:
    result = cli(
        "draw",
        "a cat",
        "--offline",
        "--cache-dir",
        str(tmp_path),
        "--decoder",
        str(model_files.decoder_pickle),
    )
    assert result.code == 1
    assert str(tmp_path / "clip" / "ViT-B-32.pt") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unwritable_output_is_one_clear_line(
    cli: Cli, model_files: ModelFiles, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = cli(*_draw_args(model_files, blocker / "picture.png", "--iterations", "1"))
    assert result.code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("pseudo-dalle: error: cannot write")
    assert "Traceback" not in result.stderr


def test_malicious_decoder_is_refused(cli: Cli, tmp_path: Path, model_files: ModelFiles) -> None:
    marker = tmp_path / "pwned"

    class RunsCommand:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "decoder.pkl"
    torch.save({"blocks.input.w": RunsCommand()}, evil)
    result = cli(
        "draw", "a cat", "--clip-model", str(model_files.clip_state_dict), "--decoder", str(evil)
    )
    assert result.code == 1
    assert "refusing to load" in result.stderr
    assert not marker.exists()


SEVERAL_LOSSES = re.compile(
    r"loss (-?[\d.]+) -> (-?[\d.]+) \(clip-torchscript\.pt (-?[\d.]+) -> (-?[\d.]+), "
    r"clip-48\.pt (-?[\d.]+) -> (-?[\d.]+)\), seed 4, "
)


def test_several_clip_models_each_report_their_loss(
    cli: Cli, model_files: ModelFiles, tmp_path: Path
) -> None:
    second = ["--clip-model", str(model_files.clip_48_torchscript)]
    out = tmp_path / "both.png"
    result = cli(*_draw_args(model_files, out, "--iterations", "5", "--seed", "4", *second))
    assert result.code == 0, result.stderr
    losses = SEVERAL_LOSSES.search(result.stdout)
    assert losses, result.stdout
    first, last, small_first, small_last, large_first, large_last = map(float, losses.groups())
    assert first == pytest.approx(small_first + large_first, abs=2e-4)
    assert last == pytest.approx(small_last + large_last, abs=2e-4)
    assert "clip-48.pt=" in result.stderr  # the progress bar shows each model's share
    recorded = json.loads(read_png_text(out)["clip_models"])
    assert [entry["model"] for entry in recorded] == ["clip-torchscript.pt", "clip-48.pt"]
    assert recorded[1]["final_loss"] == pytest.approx(large_last, abs=1e-4)

    refused = cli(
        *_draw_args(
            model_files,
            tmp_path / "no.png",
            "--iterations",
            "1",
            "--text-encoder",
            "multilingual",
            *second,
        )
    )
    assert refused.code == 2
    assert "the multilingual text encoder works with one CLIP model" in refused.stderr


def test_fetch_weights_downloads_into_the_cache(
    cli: Cli, model_files: ModelFiles, file_server: FileServer, tmp_path: Path
) -> None:
    file_server.files["/decoder.pkl"] = model_files.decoder_pickle.read_bytes()
    args = [
        "fetch-weights",
        "--cache-dir",
        str(tmp_path),
        "--clip-model",
        str(model_files.clip_state_dict),
        "--decoder",
        file_server.url("/decoder.pkl"),
    ]
    result = cli(*args)
    assert result.code == 0, result.stderr
    cached = next((tmp_path / "dall_e").glob("*decoder.pkl"))
    assert f"decoder: {cached}" in result.stdout
    assert cached.read_bytes() == model_files.decoder_pickle.read_bytes()
    assert cli(*args, "--offline").code == 0
    assert file_server.hits["/decoder.pkl"] == 1
    both = cli(*args, "--clip-model", str(model_files.clip_48_torchscript), "--offline")
    assert both.code == 0, both.stderr
    assert f"CLIP: {model_files.clip_state_dict}\nCLIP: {model_files.clip_48_torchscript}\n" in (
        both.stdout
    )
    assert "encoder:" not in result.stdout
    file_server.files["/encoder.pkl"] = model_files.encoder_pickle.read_bytes()
    encoder_args = [*args, "--with-encoder", "--encoder", file_server.url("/encoder.pkl")]
    with_encoder = cli(*encoder_args)
    assert with_encoder.code == 0, with_encoder.stderr
    stored = next((tmp_path / "dall_e").glob("*encoder.pkl"))
    assert f"encoder: {stored}" in with_encoder.stdout
    assert cli(*encoder_args, "--offline").code == 0
    assert file_server.hits["/encoder.pkl"] == 1


TOO_MANY = "too many pixels (at most 16.8 million)"
NOT_LISTED = "the file is not a PNG, JPEG, WebP or GIF picture"


def test_pictures_from_files_start_and_steer_and_are_recorded(
    cli: Cli, model_files: ModelFiles, tmp_path: Path
) -> None:
    start, steer = tmp_path / "start.jpg", tmp_path / "steer.png"
    Image.effect_mandelbrot((120, 90), (-2.0, -1.2, 1.0, 1.2), 40).convert("RGB").save(start)
    Image.effect_noise((70, 70), 60).convert("RGB").save(steer)
    out = tmp_path / "out.png"
    result = cli(
        "draw",
        "--init-image",
        str(start),
        "--init-strength",
        "0.75",
        "--image-prompt",
        f"{steer}:2",
        "--encoder",
        str(model_files.encoder_pickle),
        "--iterations",
        "3",
        "--size",
        "64",
        "--cutouts",
        "4",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--out",
        str(out),
        *_model_args(model_files),
    )
    assert result.code == 0, result.stderr
    text = read_png_text(out)
    digest = hashlib.sha256(start.read_bytes()).hexdigest()
    assert json.loads(text["init_image"]) == {
        "name": "start.jpg",
        "sha256": digest,
        "strength": 0.75,
    }
    assert json.loads(text["image_prompts"]) == [
        {
            "name": "steer.png",
            "sha256": hashlib.sha256(steer.read_bytes()).hexdigest(),
            "weight": 2.0,
        }
    ]
    assert text["prompt"] == ""


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bomb.png", png_claiming(20_000, 20_000), f"the picture has {TOO_MANY}"),
        ("picture.bmp", encoded(noise(40, 30), "BMP"), NOT_LISTED),
        ("notes.png", b"a text file named .png", NOT_LISTED),
        ("cut.jpg", encoded(noise(40, 30), "JPEG")[:300], "the picture is damaged or cut short"),
        ("huge.png", b"\0" * (9 * 2**20), "the picture is too big (9 MiB; at most 8 MiB)"),
    ],
)
def test_refused_pictures_exit_2_with_one_line(
    cli: Cli, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for option in ("--init-image", "--image-prompt"):
        result = cli("draw", "a cat", option, str(path), "--clip-model", "/nonexistent/clip.pt")
        assert result.code == 2
        assert result.stderr == f"pseudo-dalle: error: {path}: {message}\n"


def test_lr_0_with_auto_stop_ends_early_and_says_so(
    cli: Cli, model_files: ModelFiles, tmp_path: Path
) -> None:
    result = cli(
        *_draw_args(
            model_files,
            tmp_path / "still.png",
            "--iterations",
            "300",
            "--lr",
            "0",
            "--auto-stop",
            "2",
            "--lr-drop",
            "off",
            "--cut-schedule",
            "fixed",
        )
    )
    assert result.code == 0, result.stderr
    summary = SUMMARY.search(result.stdout)
    assert summary, result.stdout
    steps = int(summary.group(2))
    assert steps < 300
    assert (
        f"auto-stopped at step {steps}: the loss, averaged over 10 steps, did not beat its "
        "best for 2 windows in a row" in result.stdout
    )
    settings = read_png_text(tmp_path / "still.png")["settings"]
    assert '"lr_drop": null' in settings
    assert '"cut_schedule": "fixed"' in settings


# -- real processes ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_shell_sees_exit_2_and_one_line_for_a_refused_picture(tmp_path: Path) -> None:
    """The whole stderr of a real process: in this one a stray warning (torch's, Pillow's) would
    show as a second line, where the in-process cases' warnings go to pytest instead."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(20_000, 20_000))
    result = _process("draw", "a cat", "--init-image", str(bomb), "--clip-model", "/nonexistent")
    assert result.returncode == 2
    assert result.stderr == f"pseudo-dalle: error: {bomb}: the picture has {TOO_MANY}\n"


@pytest.mark.slow
def test_the_shell_sees_exit_0_for_a_drawing(model_files: ModelFiles, tmp_path: Path) -> None:
    out = tmp_path / "shell.png"
    result = _process(*_draw_args(model_files, out, "--iterations", "2", "--seed", "7"))
    assert result.returncode == 0, result.stderr
    summary = SUMMARY.search(result.stdout)
    assert summary, result.stdout
    assert (summary.group(1), summary.group(2), summary.group(8)) == ("done", "2", str(out))
    assert read_png_text(out)["seed"] == "7"


@pytest.mark.slow
def test_ctrl_c_saves_the_picture_so_far(model_files: ModelFiles, tmp_path: Path) -> None:
    out, frames = tmp_path / "stopped.png", tmp_path / "frames"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "generator",
            "draw",
            "a long job",
            "--iterations",
            "100000",
            "--size",
            "64",
            "--cutouts",
            "4",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--out",
            str(out),
            "--save-every",
            "1",
            "--progress-dir",
            str(frames),
            *_model_args(model_files),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (frames.is_dir() and any(frames.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    summary = SUMMARY.search(stdout)
    assert summary, stdout
    assert summary.group(1) == "stopped"
    assert 1 <= int(summary.group(2)) < 100000
    with Image.open(out) as image:
        assert image.size == (64, 64)
    assert read_png_text(out)["iterations"] == summary.group(2)
