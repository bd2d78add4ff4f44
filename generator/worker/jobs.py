"""A `StartJob` as the engine takes it: its spec as `DrawSettings` and a `Job`, its pictures as
`ImageInput`s, its continue state as logits (or, for an edit, as the token grid it edits), or
the `Refusal` a worker sends instead.

The bot decided everything when the member asked (`generator.contract.jobs`); the worker adds
only what is its own (precision, checkpointing, compiling, relaxation) and refuses, never
adjusts, a job it cannot draw as decided: one naming a CLIP model it does not hold or more
cutouts than its `[worker] cutouts`, one whose spec checks its prompt by meaning when the
prompt comes too close to an unsafe concept, and an edit of a picture another decoder drew.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging

import torch

from generator.contract.edits import UPSCALE_FACTOR, EditSpec, TokenGrid
from generator.contract.errors import GeneratorError, MemberError
from generator.contract.images import ImageInput
from generator.contract.jobs import JobSpec, PictureRef
from generator.contract.protocol import (
    CheckMeaning,
    MeaningChecked,
    StartJob,
    WorkerOptions,
    b64_to_png,
)
from generator.contract.reasons import (
    CANNOT_START,
    EDIT_OTHER_DECODER,
    MISSING_MODEL,
    PROMPT_MEANING,
    STATE_UNUSABLE,
    TOO_MANY_CUTOUTS,
    Reason,
    check_values,
)
from generator.contract.screening import Concept
from generator.contract.settings import DrawSettings, Job
from generator.contract.weights import clip_label
from generator.method.canvas import encoded_canvas
from generator.method.edits import edit_job
from generator.method.engine import Engine
from generator.method.latent import unpack_state
from generator.method.screening import Screener

log = logging.getLogger("pseudo_dalle.worker")


class Refusal(Exception):
    """A job this worker does not start, for `reason` with the `values` that fill it: what its
    `Failed` message carries."""

    def __init__(self, reason: Reason, **values: str | int) -> None:
        check_values(reason.code, values)
        super().__init__(reason.code)
        self.reason = reason
        self.values = values


def check_drawable(spec: JobSpec, held: tuple[str, ...], options: WorkerOptions) -> None:
    """Refusal unless this worker holds every CLIP model `spec` names and draws its cutouts."""
    missing = [name for name in spec.clip_models if name not in held]
    if missing:  # the bot gives jobs to workers holding their models; this one was stale
        raise Refusal(MISSING_MODEL, model=clip_label(missing[0]))
    if spec.cutouts > options.cutouts:
        raise Refusal(TOO_MANY_CUTOUTS, cutouts=spec.cutouts, most=options.cutouts)


def draw_settings(spec: JobSpec, options: WorkerOptions, precision: str) -> DrawSettings:
    """The spec's size, cutouts, CLIP models and tiling, drawn the way this worker draws."""
    return DrawSettings(
        width=spec.width,
        height=spec.height,
        cutouts=spec.cutouts,
        precision=precision,
        checkpointing=options.checkpointing,
        compile=options.compile,
        relaxation=options.relaxation,
        clip_models=spec.clip_models,
        tile=spec.tile,
    )


def check_meaning(
    engine: Engine, screener: Screener | None, job: Job, settings: DrawSettings, job_id: int
) -> None:
    """Refusal when a positive part of `job`'s prompt, embedded into the main CLIP's text space
    by the text encoder that would draw it, comes too close to an unsafe concept; also when
    there is no screener to tell (logged: the check fails closed). A part that steers away
    (a negative weight) may name anything."""
    if screener is None:
        log.error("job %s: its prompt cannot be checked by meaning: screening is off", job_id)
        raise Refusal(CANNOT_START)
    concept = closest_unsafe(engine, screener, job, settings)
    if concept is not None:
        raise Refusal(PROMPT_MEANING, concept=concept.text)


def closest_unsafe(
    engine: Engine, screener: Screener, job: Job, settings: DrawSettings
) -> Concept | None:
    """The unsafe concept a positive part of `job`'s prompt comes too close to, or None."""
    main = dataclasses.replace(settings, clip_models=(engine.models.clip_names[0],))
    embeddings = engine.embed_prompts(job, main)[0]  # (P, D), one per part
    positive = [index for index, part in enumerate(job.prompts) if part.weight > 0]
    return screener.meaning(embeddings[positive])


def answer_meaning(
    engine: Engine, screener: Screener | None, check: CheckMeaning
) -> MeaningChecked:
    """The answer to a prompt checked by meaning before it is queued; `checked` False (logged)
    when it cannot be told: no screener, or a prompt or encoder this worker cannot use."""
    if screener is None:
        log.error("a prompt cannot be checked by meaning: screening is off")
        return MeaningChecked(check.check_id, checked=False)
    try:
        job = Job(check.prompt, 0, 1, text_encoder=check.text_encoder)
        concept = closest_unsafe(engine, screener, job, engine.settings)
    except GeneratorError as error:
        log.warning("a prompt could not be checked by meaning: %s", error)
        return MeaningChecked(check.check_id, checked=False)
    return MeaningChecked(
        check.check_id, checked=True, concept=None if concept is None else concept.text
    )


def engine_job(start: StartJob, settings: DrawSettings, engine: Engine) -> Job:
    """The job to add to the batch (for a zoom out and Upscale (Creative), its tokens made by
    the dVAE encoder, loaded first if need be). Refusal when its state or its pictures cannot
    be used, or when it edits a picture another decoder drew; PromptError for a prompt that
    cannot be read, SettingsError for a job the engine refuses (or one needing an encoder that
    is not configured)."""
    spec, models = start.spec, engine.models
    pictures = _Pictures(start)
    job = Job(
        spec.prompt,
        spec.seed,
        spec.iterations,
        init_logits=None if spec.edit else _initial_logits(start, models.vocab_size, settings),
        text_encoder=spec.text_encoder,
        init_image=None if spec.init_image is None else pictures.image(spec.init_image),
        init_strength=spec.init_strength,
        image_prompts=tuple(pictures.image(ref) for ref in spec.image_prompts),
        auto_stop=spec.auto_stop,
    )
    return job if spec.edit is None else _edit(start, spec.edit, job, settings, engine)


def _edit(start: StartJob, edit: EditSpec, job: Job, settings: DrawSettings, engine: Engine) -> Job:
    """`job` as the edit of the token grid its init state holds: started from those tokens as
    firmly as the edit says, or, for a region edit and a canvas's new part, keeping every token
    outside the cells that start afresh. A zoom out and Upscale (Creative) start from the
    encoder's tokens of the picture scaled (`encoded_canvas`); the others' canvas came made."""
    models = engine.models
    try:
        grid = TokenGrid.from_state(_state_bytes(start), models.decoder_sha256)
    except MemberError:
        log.warning("job %s: its init state holds no token grid", start.job_id)
        raise Refusal(STATE_UNUSABLE) from None
    if edit.decoder_sha256 is not None and edit.decoder_sha256 != models.decoder_sha256:
        raise Refusal(EDIT_OTHER_DECODER, decoder=edit.decoder_sha256[:12])
    scale = UPSCALE_FACTOR if edit.kind == "upscale" else 1
    drawn = (scale * grid.rows, scale * grid.cols, grid.vocab)
    if drawn != (*settings.token_grid, models.vocab_size):
        log.warning("job %s: its token grid is not one of its size and decoder", start.job_id)
        raise Refusal(STATE_UNUSABLE)
    canvas, fresh = encoded_canvas(engine, grid, edit, settings.tile)
    try:
        return edit_job(job, canvas, edit, fresh)
    except ValueError as error:
        log.warning("job %s: its region cannot be used: %s", start.job_id, error)
        raise Refusal(STATE_UNUSABLE) from None


def _state_bytes(start: StartJob) -> bytes:
    """The bytes of the init state a job came with; Refusal when it has none or they are not
    base64."""
    if start.init_state is None:
        log.warning("job %s: it edits a picture but came without its tokens", start.job_id)
        raise Refusal(STATE_UNUSABLE)
    try:
        return base64.b64decode(start.init_state, validate=True)
    except binascii.Error:
        log.warning("job %s: its init state is not base64", start.job_id)
        raise Refusal(STATE_UNUSABLE) from None


def _initial_logits(start: StartJob, vocab: int, settings: DrawSettings) -> torch.Tensor | None:
    """(1, h, w, V): where a continued job starts, from the continue state it came with."""
    if start.init_state is None:
        return None
    data = _state_bytes(start)
    try:
        return unpack_state(data, vocab, settings.token_grid)
    except ValueError as error:
        log.warning("job %s: its init state cannot be used: %s", start.job_id, error)
        raise Refusal(STATE_UNUSABLE) from None


class _Pictures:
    """The bytes `StartJob.pictures` carries, by SHA-256, decoded as a job's refs ask."""

    def __init__(self, start: StartJob) -> None:
        self._job_id = start.job_id
        self._data = {picture.sha256: picture.png_b64 for picture in start.pictures}

    def image(self, ref: PictureRef) -> ImageInput:
        text = self._data.get(ref.sha256)
        if text is None:
            log.error("job %s: no bytes came for its picture %r", self._job_id, ref.name)
            raise Refusal(CANNOT_START)
        try:
            png = b64_to_png(text)
        except ValueError:
            log.error("job %s: its picture %r is not valid base64", self._job_id, ref.name)
            raise Refusal(CANNOT_START) from None
        return ImageInput(png, name=ref.name, sha256=ref.sha256, weight=ref.weight)
