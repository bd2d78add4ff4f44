"""Seamless tiles: the decoder wraps around, so its output is exactly periodic, and cutouts
reach across the picture's edges. On the tiny random models, CPU, fp32.

A pixel statistic of the seam cannot tell a tile from an ordinary picture with random weights
(a random decoder's 3x3 convolutions barely matter), so the test is exactness: the token grid
tiled 2x2 decodes to the picture tiled 2x2, every pixel. Bit for bit with PyTorch's own CPU
convolutions: oneDNN's (the default) choose their blocking by the input's size, so the larger
grid sums in another order, measured within 8e-7 of it, which may move a pixel of the 8-bit
PNG by one step (the last test).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from generator.contract.protocol import WorkerOptions, b64_to_png
from generator.contract.settings import DrawSettings
from generator.intake.edits import edit_source_file
from generator.method.cutouts import cutout_transforms, make_cutouts, wrapped
from generator.method.engine import Engine
from generator.method.fast import FastDecoder
from generator.method.latent import decode
from generator.models.loaders import Models
from generator.worker.core import Worker

from .cli_harness import Cli, tiny_args
from .conftest import ModelFiles
from .test_worker_core import Recorder, Served

CPU = torch.device("cpu")


def _decoded(decoder: FastDecoder, tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    with torch.no_grad():
        return decode(decoder, F.one_hot(tokens, vocab).float().permute(0, 3, 1, 2))[0]


@pytest.mark.parametrize("wrap", ["xy", "x", "y"])
def test_a_wrapping_decoders_output_is_exactly_periodic(
    tiny_models: Models, wrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    vocab = tiny_models.vocab_size
    tokens = torch.randint(vocab, (1, 6, 10), generator=torch.Generator().manual_seed(0))
    tall, wide = (2 if "y" in wrap else 1), (2 if "x" in wrap else 1)
    tiled = tokens.repeat(1, tall, wide)
    circular = FastDecoder(tiny_models.decoder, wrap=wrap)
    plain = FastDecoder(tiny_models.decoder)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    picture = _decoded(circular, tokens, vocab)  # (3, 48, 80)
    assert torch.equal(_decoded(circular, tiled, vocab), picture.repeat(1, tall, wide))
    # Zero padding, the decoder as published: the copies meet at a seam.
    assert not torch.equal(
        _decoded(plain, tiled, vocab), _decoded(plain, tokens, vocab).repeat(1, tall, wide)
    )
    # Along an axis it does not wrap, it is not periodic.
    if wrap != "xy":
        other = tokens.repeat(1, wide, tall)  # tiled along the other axis
        assert not torch.equal(_decoded(circular, other, vocab), picture.repeat(1, wide, tall))


def test_wrapped_cutouts_reach_across_the_edges() -> None:
    # Each column holds its own index: a crop across the left and right edges holds columns
    # from both ends side by side.
    width, height = 64, 64
    columns = torch.arange(width).float().expand(1, 3, height, width).contiguous()
    settings = DrawSettings(width=width, height=height, cutouts=64, cut_size_mean=0.5)
    generator = torch.Generator().manual_seed(0)
    transforms = cutout_transforms(settings, generator, CPU)[None]

    def across(images: torch.Tensor, maps: torch.Tensor) -> int:
        crops = make_cutouts(images, maps, 16)[:, 0]  # (N, 16, 16): column indices
        jumps = (crops[:, :, 1:] - crops[:, :, :-1]).abs().amax(dim=(1, 2))
        return int((jumps > width / 2).sum())  # crops where the far columns meet

    assert across(columns, transforms) == 0
    canvas, moved = wrapped(columns, transforms, [torch.Generator().manual_seed(1)], "x")
    assert canvas.shape == (1, 3, height, 2 * width)
    assert across(canvas, moved) > 10
    # Only x wraps: the rows are cut as before.
    assert torch.equal(moved[:, :, 1], transforms[:, :, 1])


@pytest.mark.slow
def test_pseudo_dalle_draws_a_tile_and_its_edits_stay_tiles(
    cli: Cli, model_files: ModelFiles, tiny_models: Models, tmp_path: Path
) -> None:
    common = tiny_args(model_files)
    tile = tmp_path / "tile.png"
    drawn = cli(
        "draw",
        "a brick wall",
        "--size",
        "64",
        "--iterations",
        "3",
        "--tile",
        "--out",
        str(tile),
        *common,
    )
    assert drawn.code == 0, drawn.stderr
    source = edit_source_file(tile)
    assert source.tile == "xy"
    with Image.open(tile) as image:
        assert json.loads(image.info["settings"])["tile"] == "xy"
        picture = image.convert("RGB")
    # Its tokens tiled 2x2 decode to the picture tiled 2x2, every pixel.
    settings = DrawSettings(width=128, height=128, tile="xy")
    tokens = torch.tensor(source.grid.tokens).view(1, 8, 8).repeat(1, 2, 2)
    logits = F.one_hot(tokens, source.grid.vocab).float()
    wall = Engine(tiny_models, settings).render(logits, settings)
    expected = Image.new("RGB", (128, 128))
    for x in (0, 64):
        for y in (0, 64):
            expected.paste(picture, (x, y))
    # Within one 8-bit step of it, where oneDNN's sums round the other way (module docstring).
    difference = np.abs(np.asarray(wall, dtype=int) - np.asarray(expected, dtype=int))
    assert difference.max() <= 1
    assert (difference == 0).mean() > 0.99
    varied = tmp_path / "varied.png"
    vary = cli(
        "edit", str(tile), "--vary", "subtle", "--iterations", "2", "--out", str(varied), *common
    )
    assert vary.code == 0, vary.stderr
    assert edit_source_file(varied).tile == "xy"
    plain = tmp_path / "plain.png"
    cli("draw", "a brick wall", "--size", "64", "--iterations", "1", "--out", str(plain), *common)
    assert edit_source_file(plain).tile == ""


def test_a_worker_draws_the_tile_a_job_asks_for(tiny_models: Models) -> None:
    channel = Recorder()
    worker = Worker(tiny_models, channel, WorkerOptions(cutouts=4, threads=1))
    channel.worker = worker
    served = Served(worker, channel, tiny_models.clip_names[0]).start()
    try:
        finished = served.draw(served.job(1, 2, tile="x"))
        with Image.open(io.BytesIO(b64_to_png(finished.png_b64))) as image:
            assert json.loads(image.info["settings"])["tile"] == "x"
    finally:
        worker.close()
        assert served.stopped()
