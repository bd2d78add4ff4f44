"""Screening in the worker: Q16's vendored learned prompts, the `Screener`'s scores against what
CLIP itself computes, the meaning check, and what a real worker sends with each picture.

The tiny random CLIP's text tower gives every text much the same embedding (measured: 0.56 to
0.999 between the meaning concepts, 0.83 from "a cat" and 0.94 from "a lighthouse at dusk" to
the nearest of them), so a prompt far from every concept is built here rather than typed; its
image-text cosines (about -0.13 to 0.34 for random pictures) are not meant to cross anything.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from generator.contract.errors import GeneratorError
from generator.contract.prompts import WeightedPrompt, parse_prompts
from generator.contract.protocol import (
    CheckMeaning,
    Failed,
    Finished,
    MeaningChecked,
    Progress,
    WorkerOptions,
    b64_to_png,
)
from generator.contract.reasons import CANNOT_START, PROMPT_MEANING
from generator.contract.screening import (
    BUILTIN_CONCEPTS,
    LEARNED_PROMPT_MODELS,
    MEANING_CONCEPTS,
    Concept,
    Scores,
    ScreeningSpec,
)
from generator.method.engine import to_pil
from generator.method.objective import embed_prompts
from generator.method.screening import Screener, highest, pixels
from generator.models.learned_prompts import SHA256, VENDORED, file_name, learned_prompts
from generator.models.loaders import Models
from generator.worker.build import build_screener
from generator.worker.core import Worker

from .test_worker_core import Recorder, Served

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip.clip

CPU = torch.device("cpu")
WIDTHS = {"ViT-B/32": 512, "ViT-B/16": 512, "ViT-L/14": 768}
SPIDERS = ScreeningSpec(
    concepts=(Concept(text="a spider", threshold=0.3), Concept(text="a clown", threshold=0.25))
)


# -- Q16's learned prompts ----------------------------------------------------------------------


def _notice_digests() -> dict[str, str]:
    """Each CLIP model's SHA-256 as q16/NOTICE gives it."""
    notice = (VENDORED / "NOTICE").read_text(encoding="utf-8")
    found = re.findall(r"\(CLIP (\S+), shape .*?\n.*?\n\s+sha256:\s+([0-9a-f]{64})", notice)
    return dict(found)


def test_the_vendored_learned_prompts_load_as_plain_arrays_with_the_digests_noted() -> None:
    digests = _notice_digests()
    assert digests == SHA256
    assert set(SHA256) == set(LEARNED_PROMPT_MODELS)
    for name in LEARNED_PROMPT_MODELS:
        data = (VENDORED / file_name(name)).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digests[name]
        array = np.load(io.BytesIO(data), allow_pickle=False)
        assert (array.dtype, array.shape) == (np.float16, (2, WIDTHS[name]))
        rows = learned_prompts(name, CPU)
        assert rows is not None
        assert rows.dtype == torch.float32
        assert torch.equal(rows, torch.from_numpy(array.astype(np.float32)))


def test_other_clip_models_have_no_learned_prompts(tiny_models: Models) -> None:
    assert learned_prompts("RN50", CPU) is None
    assert learned_prompts(tiny_models.clip_names[0], CPU) is None  # a checkpoint file


def test_a_damaged_or_missing_learned_prompts_file_is_refused_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "q16"
    shutil.copytree(str(VENDORED), folder)
    assert learned_prompts("ViT-B/32", CPU, folder=folder) is not None  # the copy is good
    damaged = bytearray((folder / "ViT-B-32.npy").read_bytes())
    damaged[-1] ^= 0x01  # one bit of the last value
    (folder / "ViT-B-32.npy").write_bytes(bytes(damaged))
    with pytest.raises(GeneratorError, match=r"ViT-B/32 \(.*ViT-B-32\.npy\) are damaged"):
        learned_prompts("ViT-B/32", CPU, folder=folder)
    (folder / "ViT-L-14.npy").unlink()
    with pytest.raises(GeneratorError, match=r"ViT-L-14\.npy\) cannot be read"):
        learned_prompts("ViT-L/14", CPU, folder=folder)


# -- the Screener -------------------------------------------------------------------------------


def _picture(height: int, width: int, seed: int) -> torch.Tensor:
    """A picture (3, H, W) in [0, 1]: broad shapes under fine noise, so that how it is scaled
    down shows."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 6, generator=generator)
    shapes = F.interpolate(coarse, size=(height, width), mode="bilinear")[0]
    return 0.5 * shapes + 0.5 * torch.rand(3, height, width, generator=generator)


def _clip_embedding(clip_model: object, picture: torch.Tensor) -> torch.Tensor:
    """The unit image embedding (D,) of a picture as CLIP's own preprocessing and model give it."""
    resolution = int(clip_model.visual.input_resolution)  # type: ignore[attr-defined]
    prepared = clip.clip._transform(resolution)(to_pil(picture))  # (3, r, r)
    with torch.no_grad():
        embedding = clip_model.encode_image(prepared[None]).float()  # type: ignore[attr-defined]
    return F.normalize(embedding, dim=-1)[0]


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (72, 40)], ids=["square", "wide", "tall"])
def test_scores_are_the_cosines_clip_itself_gives(
    tiny_models: Models, size: tuple[int, int]
) -> None:
    picture = _picture(*size, seed=sum(size))
    scores = Screener.for_models(tiny_models).score(picture, SPIDERS)
    concepts = SPIDERS.picture_concepts()
    texts = embed_prompts(tiny_models.clip, tuple(WeightedPrompt(c.text) for c in concepts))
    expected = (texts @ _clip_embedding(tiny_models.clip, picture)).tolist()
    assert len(scores.concepts) == len(BUILTIN_CONCEPTS) + 2
    # Pillow's bicubic resize and its 8-bit rounding against torch's: measured within 5e-4.
    assert scores.concepts == pytest.approx(expected, abs=2e-3)
    assert scores.learned is None  # the tiny CLIP is no model Q16 learned prompts for


def test_q16_probability_is_the_softmax_of_a_hundred_cosines_at_row_one(
    tiny_models: Models,
) -> None:
    picture = _picture(64, 64, seed=3)
    embedding = Screener.for_models(tiny_models).image_embedding(picture)
    # Two rows at cosines 0.30 ("non inappropriate") and 0.31 ("inappropriate") with the
    # picture, not unit length (as Q16's are not): the softmax of (30, 31) at row 1.
    others = torch.randn(2, embedding.shape[0], generator=torch.Generator().manual_seed(0))
    others = F.normalize(others - (others @ embedding)[:, None] * embedding, dim=-1)
    cosines = torch.tensor([0.30, 0.31])
    rows = cosines[:, None] * embedding + (1 - cosines**2).sqrt()[:, None] * others
    learned = 13.0 * rows
    scores = Screener(tiny_models.clip, learned).score(picture, SPIDERS)
    assert scores.learned == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-4)
    swapped = Screener(tiny_models.clip, learned.flip(0)).score(picture, SPIDERS)
    assert swapped.learned == pytest.approx(1 / (1 + np.exp(1.0)), abs=1e-4)
    assert swapped.concepts == scores.concepts


def test_learned_prompts_of_another_width_are_refused(tiny_models: Models) -> None:
    with pytest.raises(GeneratorError, match=r"\(2, 512\).*32 wide"):
        Screener(tiny_models.clip, torch.zeros(2, 512))


def test_highest_takes_each_concepts_higher_score() -> None:
    first = Scores(concepts=(0.1, 0.5, -0.2), learned=0.7)
    second = Scores(concepts=(0.3, 0.4, -0.1), learned=0.2)
    assert highest(first, second) == Scores(concepts=(0.3, 0.5, -0.1), learned=0.7)
    assert highest(second, first) == highest(first, second)
    assert highest(Scores(concepts=(0.1,)), Scores(concepts=(0.2,))).learned is None


def test_the_meaning_check_refuses_a_concepts_own_words_and_passes_what_is_far_from_all(
    tiny_models: Models,
) -> None:
    screener = Screener.for_models(tiny_models)
    naked = embed_prompts(tiny_models.clip, (WeightedPrompt("naked"),))
    assert screener.meaning(naked) == MEANING_CONCEPTS[0]
    # The last concept's own words (cosine 1 with it) name the first concept they cross, which
    # with this tiny CLIP's crowded text space may come earlier in the list.
    last = embed_prompts(tiny_models.clip, (WeightedPrompt(MEANING_CONCEPTS[-1].text),))
    concepts = screener.text_embeddings(MEANING_CONCEPTS)
    cosines = (concepts @ last[0]).tolist()
    assert cosines[-1] == pytest.approx(1.0, abs=1e-5)
    crossed = [c for c, cosine in zip(MEANING_CONCEPTS, cosines, strict=True) if cosine >= 0.9]
    assert screener.meaning(last) == crossed[0]
    # A prompt at right angles to every concept (cosine 0 with each), alone and beside one that
    # crosses.
    basis = torch.linalg.qr(concepts.T).Q  # (D, C): spans the concepts
    far = torch.randn(concepts.shape[1], generator=torch.Generator().manual_seed(1))
    far = F.normalize(far - basis @ (basis.T @ far), dim=0)
    assert (concepts @ far).abs().max() < 1e-5
    assert screener.meaning(far[None]) is None
    assert screener.meaning(torch.stack([far, naked[0]])) == MEANING_CONCEPTS[0]
    assert screener.meaning(torch.zeros(0, concepts.shape[1])) is None


# -- through a real worker ----------------------------------------------------------------------

WorkerFactory = Callable[..., Served]


@pytest.fixture
def screening_worker(tiny_models: Models) -> Iterator[WorkerFactory]:
    """Makes serving workers on the tiny models with the given screener (None: none loaded);
    closed afterwards."""
    made: list[Served] = []

    def make(screener: Screener | None) -> Served:
        channel = Recorder()
        options = WorkerOptions(cutouts=4, threads=1)
        worker = Worker(tiny_models, channel, options, screener=screener)
        channel.worker = worker
        made.append(Served(worker, channel, tiny_models.clip_names[0]).start())
        return made[-1]

    yield make
    for served in made:
        served.worker.close()
        assert served.stopped(), "the worker did not stop when closed"


def _pixels_of(png_b64: str) -> torch.Tensor:
    with Image.open(io.BytesIO(b64_to_png(png_b64))) as image:
        return pixels(image, CPU)


def _progress(served: Served, job_id: int) -> list[Progress]:
    return [m for m in served.channel.of(job_id) if isinstance(m, Progress)]


def test_every_picture_of_a_screened_job_carries_its_scores(
    tiny_models: Models, screening_worker: WorkerFactory
) -> None:
    screener = Screener.for_models(tiny_models)
    served = screening_worker(screener)
    finished = served.draw(served.job(1, 4, screening=SPIDERS))
    progress = _progress(served, 1)
    assert [p.step for p in progress] == [1, 2, 3, 4]
    for report in progress:
        assert report.screening is not None
        assert len(report.screening.concepts) == len(BUILTIN_CONCEPTS) + 2
        # The scores of the picture sent (which is rounded to 8 bits on its way).
        sent = screener.score(_pixels_of(report.png_b64), SPIDERS)
        assert report.screening.concepts == pytest.approx(sent.concepts, abs=2e-3)
    assert finished.screening == screener.score(_pixels_of(finished.png_b64), SPIDERS)
    assert finished.timelapse_screening is None  # no time-lapse asked for


def test_a_timelapse_carries_the_highest_score_of_its_frames_and_final_picture(
    tiny_models: Models, screening_worker: WorkerFactory
) -> None:
    served = screening_worker(Screener.for_models(tiny_models))
    finished = served.draw(served.job(1, 6, screening=SPIDERS, timelapse=True))
    assert finished.timelapse_b64 is not None
    # Six iterations keep a frame at every step, and each progress report shows that frame.
    frames = [p.screening for p in _progress(served, 1) if p.screening is not None]
    assert len(frames) == 6
    final, timelapse = finished.screening, finished.timelapse_screening
    assert final is not None
    assert timelapse is not None
    for index, score in enumerate(timelapse.concepts):
        assert score >= final.concepts[index]
        assert score == max([*(frame.concepts[index] for frame in frames), final.concepts[index]])


def test_a_job_with_screening_off_gets_no_scores_and_no_meaning_check(
    tiny_models: Models, screening_worker: WorkerFactory
) -> None:
    served = screening_worker(Screener.for_models(tiny_models))
    off = ScreeningSpec(pictures=False, meaning=False)
    finished = served.draw(served.job(1, 3, prompt="naked", screening=off, timelapse=True))
    assert (finished.steps, finished.cancelled) == (3, False)
    assert [p.screening for p in _progress(served, 1)] == [None, None, None]
    assert (finished.screening, finished.timelapse_screening) == (None, None)


def test_a_prompt_too_close_to_an_unsafe_concept_is_refused_before_its_first_step(
    tiny_models: Models, screening_worker: WorkerFactory
) -> None:
    screener = Screener.for_models(tiny_models)
    served = screening_worker(screener)
    meaning = ScreeningSpec(meaning=True)
    served.worker.submit(served.job(1, 3, prompt="a cat | naked", screening=meaning))
    failed = served.channel.wait_for(Failed, 1)
    assert (failed.reason, failed.values) == (PROMPT_MEANING.code, {"concept": "naked"})
    assert served.channel.of(1) == [failed]
    # Steering away from it is allowed: only positive parts are checked ("a cat" is far enough
    # from every concept with this tiny CLIP).
    assert screener.meaning(embed_prompts(tiny_models.clip, parse_prompts("a cat"))) is None
    finished = served.draw(served.job(2, 2, prompt="a cat | naked:-1", screening=meaning))
    assert (finished.steps, finished.cancelled) == (2, False)


def test_a_worker_whose_screener_cannot_be_built_draws_and_sends_no_scores(
    tiny_models: Models, screening_worker: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """ViT-B/32's learned prompts are 512 wide, the tiny CLIP's embeddings 32: the screener is
    refused, one error says so, and every picture goes out unscreened (the bot withholds it);
    a job asking for the meaning check cannot be checked, so it does not start."""
    with caplog.at_level(logging.ERROR, logger="pseudo_dalle.worker"):
        screener = build_screener(replace(tiny_models, clip_names=("ViT-B/32",)))
    assert screener is None
    assert [r.getMessage() for r in caplog.records if "picture screening is off" in r.getMessage()]
    served = screening_worker(None)
    finished = served.draw(served.job(1, 3, timelapse=True))
    assert (finished.steps, finished.cancelled) == (3, False)
    assert [p.screening for p in _progress(served, 1)] == [None, None, None]
    assert (finished.screening, finished.timelapse_screening) == (None, None)
    served.worker.submit(served.job(2, 3, screening=ScreeningSpec(meaning=True)))
    assert served.channel.wait_for(Failed, 2).reason == CANNOT_START.code


def test_a_picture_that_cannot_be_screened_goes_out_unscreened_and_the_job_goes_on(
    tiny_models: Models, screening_worker: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Learned prompts that are not numbers make every score NaN, which `Scores` refuses."""
    broken = Screener(tiny_models.clip, torch.full((2, 32), float("nan")))
    served = screening_worker(broken)
    with caplog.at_level(logging.ERROR, logger="pseudo_dalle.worker"):
        finished = served.draw(served.job(1, 3, timelapse=True))
    assert (finished.steps, finished.cancelled) == (3, False)
    progress = _progress(served, 1)
    assert [p.screening for p in progress] == [None, None, None]
    assert (finished.screening, finished.timelapse_screening) == (None, None)
    failures = [r for r in caplog.records if "screening a picture failed" in r.getMessage()]
    assert failures
    assert all(r.exc_info is not None for r in failures)
    assert not any(p.png_b64[:40] in caplog.text for p in progress)


def test_concept_embeddings_are_made_once_per_text_and_kept_on_the_device(
    tiny_models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    screener = Screener.for_models(tiny_models)
    first = screener.text_embeddings(SPIDERS.picture_concepts())
    embedded: list[int] = []
    encode_text = tiny_models.clip.encode_text

    def counted(tokens: torch.Tensor) -> torch.Tensor:
        embedded.append(len(tokens))
        return encode_text(tokens)  # type: ignore[no-any-return]

    monkeypatch.setattr(tiny_models.clip, "encode_text", counted)
    again = screener.text_embeddings(SPIDERS.picture_concepts())
    screener.text_embeddings((*SPIDERS.picture_concepts(), Concept(text="a moth", threshold=0.3)))
    assert torch.equal(first, again)
    assert embedded == [1]  # only "a moth" was new
    assert first.device == tiny_models.device


def _answer(served: Served, check_id: int) -> MeaningChecked:
    """The worker's answer to prompt check `check_id`, once it has come."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answers = [
            m
            for m in list(served.channel.messages)
            if isinstance(m, MeaningChecked) and m.check_id == check_id
        ]
        if answers:
            return answers[0]
        time.sleep(0.01)
    raise AssertionError(f"no answer to check {check_id}: {served.channel.messages}")


def test_a_worker_checks_prompts_by_meaning_when_idle_and_between_steps(
    tiny_models: Models, screening_worker: WorkerFactory
) -> None:
    served = screening_worker(Screener.for_models(tiny_models))
    served.worker.check(CheckMeaning(1, "a cat | naked", "clip"))
    assert _answer(served, 1) == MeaningChecked(1, checked=True, concept="naked")
    served.worker.check(CheckMeaning(2, "a cat | naked:-1", "clip"))
    assert _answer(served, 2) == MeaningChecked(2, checked=True, concept=None)
    # While a job draws, the answer comes at a step boundary, and the job goes on.
    served.worker.submit(served.job(3, 40))
    served.channel.wait_for(Progress, 3)
    served.worker.check(CheckMeaning(4, "naked", "clip"))
    assert _answer(served, 4).concept == "naked"
    finished = served.channel.wait_for(Finished, 3)
    assert (finished.steps, finished.cancelled) == (40, False)
    # What it cannot check it says so: no multilingual encoder here, an empty prompt.
    served.worker.check(CheckMeaning(5, "猫", "multilingual"))
    assert _answer(served, 5) == MeaningChecked(5, checked=False)
    served.worker.check(CheckMeaning(6, "   ", "clip"))
    assert _answer(served, 6) == MeaningChecked(6, checked=False)


def test_a_worker_without_a_screener_cannot_check_and_says_so(
    screening_worker: WorkerFactory,
) -> None:
    served = screening_worker(None)
    served.worker.check(CheckMeaning(1, "a cat", "clip"))
    assert _answer(served, 1) == MeaningChecked(1, checked=False)
