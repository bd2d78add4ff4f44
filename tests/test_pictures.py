"""Pictures as inputs in the engine: a start from a picture's tokens, held by the strength,
and image prompts that steer. Tiny real models, fixed seeds."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from generator.contract.errors import ModelLoadError, PromptError, SettingsError
from generator.contract.images import ImageInput
from generator.contract.settings import DrawSettings, Job
from generator.method.engine import Engine, StepInfo
from generator.method.fast import ImageEncoder
from generator.method.latent import decode, hard_one_hot
from generator.method.output import png_metadata
from generator.method.pictures import fitted_pixels, picture_embeddings, picture_tokens
from generator.models.loaders import Models, encoder_from_file, load_encoder

from .conftest import FileServer, ModelFiles
from .pictures import picture

SETTINGS = DrawSettings(width=64, height=64, cutouts=8)


@pytest.fixture(scope="module")
def engine(tiny_models: Models, model_files: ModelFiles) -> Engine:
    encoder = encoder_from_file(model_files.encoder_pickle, tiny_models.device)
    return Engine(tiny_models, SETTINGS, picture_encoder=lambda: encoder)


def _first_image(engine: Engine, job: Job) -> torch.Tensor:
    images: list[torch.Tensor] = []

    def on_step(info: StepInfo) -> None:
        images.append(info.image.clone())

    engine.draw(job, on_step, lambda _: len(images) > 0)
    return images[0]


def test_a_run_started_from_a_picture_starts_at_its_reconstruction(engine: Engine) -> None:
    given = picture()
    pixels = fitted_pixels(given.png, 64, 64, engine.device)
    tokens = picture_tokens(engine.picture_encoder(), pixels)
    vocab = engine.models.vocab_size
    logits = torch.nn.functional.one_hot(tokens, vocab).float()
    with torch.no_grad():
        reconstruction = decode(engine.networks(SETTINGS).decode, hard_one_hot(logits))[0]
    started = _first_image(engine, Job("a cat", 3, 10, init_image=given))
    plain = _first_image(engine, Job("a cat", 3, 10))
    near = float((started - reconstruction).pow(2).mean())
    far = float((plain - reconstruction).pow(2).mean())
    assert near < far / 5, (near, far)


def _held(engine: Engine, strength: float, steps: int) -> float:
    given = picture()
    tokens = picture_tokens(
        engine.picture_encoder(), fitted_pixels(given.png, 64, 64, engine.device)
    )
    result = engine.draw(Job("a cat", 5, steps, init_image=given, init_strength=strength))
    return float((result.logits.argmax(dim=-1) == tokens).float().mean())


@pytest.mark.slow
def test_the_strength_sets_how_firmly_the_start_holds(engine: Engine) -> None:
    full, none = _held(engine, 1.0, 60), _held(engine, 0.0, 60)
    assert full > 0.9
    assert none < full - 0.5


@pytest.mark.slow
def test_an_image_prompt_steers_towards_its_picture(engine: Engine, tiny_models: Models) -> None:
    target = picture(7)
    clip_encoder = [ImageEncoder(tiny_models.clip.visual, tiny_models.clip_resolution)]
    (embedding,) = picture_embeddings(
        clip_encoder,
        fitted_pixels(target.png, 64, 64, engine.device),
        SETTINGS,
        generator=torch.Generator().manual_seed(0),
    )

    def similarity(job: Job) -> float:
        result = engine.draw(job)
        buffer = io.BytesIO()
        result.image.save(buffer, format="PNG")
        (drawn,) = picture_embeddings(
            clip_encoder,
            fitted_pixels(buffer.getvalue(), 64, 64, engine.device),
            SETTINGS,
            generator=torch.Generator().manual_seed(1),
        )
        return float(drawn @ embedding)

    steered = similarity(Job("a cat", 2, 40, image_prompts=(target,)))
    unsteered = similarity(Job("a cat", 2, 40))
    blend = similarity(Job("", 2, 40, image_prompts=(target,)))
    assert steered > unsteered
    assert blend > unsteered


def test_pictures_are_recorded_by_name_and_hash_and_a_continue_drops_the_start(
    engine: Engine,
) -> None:
    given, steer = picture(), picture(7)
    job = Job("", 1, 2, init_image=given, init_strength=0.25, image_prompts=(steer,))
    result = engine.draw(job)
    metadata = png_metadata(result)
    assert metadata["init_image"] == (
        f'{{"name": "picture-0.png", "sha256": "{given.sha256}", "strength": 0.25}}'
    )
    assert steer.sha256 in metadata["image_prompts"]
    assert all(len(value) < 1000 for value in metadata.values())
    # Continue: from the result's latent, still steered by the picture, not started again.
    more = Job("", 1, 2, init_logits=result.logits, image_prompts=(steer,))
    assert engine.draw(more).steps == 2
    with pytest.raises(SettingsError, match="not two of them"):
        Job("", 1, 2, init_logits=result.logits, init_image=given)


def test_jobs_say_what_is_missing() -> None:
    with pytest.raises(PromptError, match="prompt is empty"):
        Job("", 1, 2, init_image=picture())
    with pytest.raises(SettingsError, match="from 0 to 1"):
        Job("a cat", 1, 2, init_image=picture(), init_strength=1.5)
    with pytest.raises(SettingsError, match="positive weight"):
        Job("", 1, 2, image_prompts=(ImageInput(picture().png, "p", "0" * 64, -1.0),))


def test_an_engine_without_the_encoder_says_so(tiny_models: Models) -> None:
    engine = Engine(tiny_models, SETTINGS)
    with pytest.raises(SettingsError, match="needs the dVAE encoder"):
        engine.draw(Job("a cat", 1, 1, init_image=picture()))


def test_the_encoder_loads_from_its_url_into_the_cache_and_refuses_the_decoder(
    model_files: ModelFiles, file_server: FileServer, tmp_path: Path
) -> None:
    file_server.files["/dall-e/encoder.pkl"] = model_files.encoder_pickle.read_bytes()
    url = file_server.url("/dall-e/encoder.pkl")
    encoder = load_encoder(url, device=torch.device("cpu"), cache_dir=tmp_path, progress=False)
    assert sum(1 for _ in encoder.parameters()) > 0
    assert not any(p.requires_grad for p in encoder.parameters())
    assert next((tmp_path / "dall_e").iterdir()).name.endswith("-encoder.pkl")
    with pytest.raises(ModelLoadError, match="is the dVAE decoder"):
        encoder_from_file(model_files.decoder_pickle, torch.device("cpu"))
