"""Reading model files never runs code from them."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from generator.contract.errors import ModelLoadError, UnsafeModelFileError
from generator.models.checkpoint import read_tensors

from .conftest import ModelFiles
from .synthetic import random_decoder


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_every_format_gives_the_same_decoder_weights(model_files: ModelFiles) -> None:
    expected = random_decoder().state_dict()
    for path in (
        model_files.decoder_pickle,
        model_files.decoder_state_dict,
        model_files.decoder_safetensors,
    ):
        tensors = read_tensors(path)
        assert tensors.keys() == expected.keys(), path
        for key, value in expected.items():
            assert torch.equal(tensors[key], value), (path, key)


def test_torchscript_archive_is_read_without_torch_jit(
    model_files: ModelFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_jit(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.jit.load must not be used")

    monkeypatch.setattr(torch.jit, "load", no_jit)
    tensors = read_tensors(model_files.clip_torchscript)
    reference = read_tensors(model_files.clip_state_dict)
    for key, value in reference.items():
        assert torch.equal(tensors[key], value), key


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pickle_that_runs_a_command_is_refused(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "decoder.pkl"
    torch.save(
        {"blocks.input.w": torch.zeros(1), "payload": _RunsCommand(marker)},
        evil,
        _use_new_zipfile_serialization=not legacy,
    )
    with pytest.raises(UnsafeModelFileError, match=r"refusing to load .*posix\.system"):
        read_tensors(evil)
    assert not marker.exists()


def test_torchscript_archive_that_runs_a_command_is_refused(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "clip.pt"
    with (
        zipfile.ZipFile(model_files.clip_torchscript) as source,
        zipfile.ZipFile(evil, "w") as target,
    ):
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(_RunsCommand(marker), protocol=2)
            target.writestr(item, data)
    with pytest.raises(UnsafeModelFileError, match="asks to run code"):
        read_tensors(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not a model at all", b"PK\x03\x04 truncated zip", b"\x80\x02}q\x00."],
    ids=["empty", "text", "broken-zip", "empty-pickle"],
)
def test_unreadable_files_get_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=str(path)) as caught:
        read_tensors(path)
    assert "\n" not in str(caught.value)


def test_truncated_checkpoint_is_refused(model_files: ModelFiles, tmp_path: Path) -> None:
    data = model_files.decoder_pickle.read_bytes()
    path = tmp_path / "decoder.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a readable model file"):
        read_tensors(path)


def test_missing_file() -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        read_tensors("/nonexistent/decoder.pkl")


def test_nested_state_dict_is_unwrapped(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, buffer)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(buffer.getvalue())
    assert list(read_tensors(path)) == ["w"]
