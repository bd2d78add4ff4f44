"""The loaders infer architectures from the weights and fail with messages that say what to do."""

from __future__ import annotations

from pathlib import Path

import dall_e
import pytest
import torch

from generator.contract.errors import ModelLoadError, SettingsError
from generator.models.loaders import (
    DecoderShape,
    clip_from_file,
    clip_path,
    decoder_from_file,
    load_models,
    resolve_device,
)

from .conftest import ModelFiles
from .synthetic import random_clip, random_decoder

CPU = torch.device("cpu")


@pytest.mark.parametrize("fmt", ["decoder_pickle", "decoder_state_dict", "decoder_safetensors"])
def test_decoder_size_is_inferred_and_weights_frozen(model_files: ModelFiles, fmt: str) -> None:
    decoder, shape = decoder_from_file(getattr(model_files, fmt), CPU)
    assert shape == DecoderShape(
        n_init=32, n_hid=64, n_blk_per_group=1, output_channels=3, vocab_size=512
    )
    assert not any(p.requires_grad for p in decoder.parameters())
    assert not decoder.training
    tokens = torch.nn.functional.one_hot(torch.arange(4).view(1, 2, 2), 512).permute(0, 3, 1, 2)
    expected = random_decoder()(tokens.float())
    assert torch.allclose(decoder(tokens.float()), expected)


def test_clip_from_state_dict_and_torchscript_agree(model_files: ModelFiles) -> None:
    from_state_dict = clip_from_file(model_files.clip_state_dict, CPU)
    from_torchscript = clip_from_file(model_files.clip_torchscript, CPU)
    reference = random_clip().float()
    image = torch.rand(2, 3, 32, 32)
    expected = reference.encode_image(image)
    assert from_state_dict.dtype == torch.float32
    assert torch.allclose(from_state_dict.encode_image(image), expected, atol=1e-5)
    assert torch.allclose(from_torchscript.encode_image(image), expected, atol=1e-5)
    assert not any(p.requires_grad for p in from_torchscript.parameters())


def test_decoder_given_as_clip_is_refused(model_files: ModelFiles) -> None:
    with pytest.raises(ModelLoadError, match="does not look like a CLIP checkpoint"):
        clip_from_file(model_files.decoder_pickle, CPU)


def test_clip_given_as_decoder_is_refused(model_files: ModelFiles) -> None:
    with pytest.raises(ModelLoadError, match="does not look like a DALL-E dVAE decoder"):
        decoder_from_file(model_files.clip_state_dict, CPU)


def test_encoder_given_as_decoder_is_named(tmp_path: Path) -> None:
    path = tmp_path / "encoder.pkl"
    torch.save(dall_e.Encoder(n_hid=64, n_blk_per_group=1, vocab_size=512), path)
    with pytest.raises(ModelLoadError, match=r"is the dVAE encoder \(encoder.pkl\)"):
        decoder_from_file(path, CPU)


def test_decoder_with_a_wrong_tensor_shape_is_refused(tmp_path: Path) -> None:
    state = random_decoder().state_dict()
    state["blocks.group_1.block_1.res_path.conv_2.w"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "decoder.pt"
    torch.save(state, path)
    with pytest.raises(
        ModelLoadError, match=r"not a loadable DALL-E dVAE decoder: .*size mismatch"
    ):
        decoder_from_file(path, CPU)


def test_unknown_clip_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelLoadError, match=r"neither a known name \(ViT-B/32"):
        clip_path("ViT-Z/99")


def test_missing_decoder_file() -> None:
    with pytest.raises(ModelLoadError, match=r"decoder file /no/such/decoder\.pkl does not exist"):
        load_models("ViT-B/32", "/no/such/decoder.pkl", device="cpu", offline=True)


def test_device_choice() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(SettingsError, match="device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SettingsError, match="no CUDA device"):
            resolve_device("cuda")
