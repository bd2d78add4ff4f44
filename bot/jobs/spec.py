"""A member's request made into one `JobSpec`, decided once, when they ask.

What the member said (`Ask`), the server's settings (`GuildSettings`) and the operator's rules
(`Rules`: the hard limits, the main CLIP, the most cutouts a worker draws, how prompts are read,
how pictures are screened) come together here and nowhere else: the quality with its cutouts and
CLIP models, iterations and size within the server's effective limits (`bot.limits.effective`),
early stopping, the time-lapse, how often the card shows progress, the screening
(`bot.moderation.policy`) and, for an edit (`Edit`), what it edits. The spec is stored as it is
and drawn as it is: an admin's later change touches only later drawings.

A request that cannot be met raises `Refused` with the sentence to show, in the member's
language; values that a limit lowered come back as `Lowered` notices.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.i18n import N_, tr
from bot.jobs.pictures import GivenPicture
from bot.limits import QUALITY_NAMES, GuildSettings, HardLimits, Lowered, clamp, effective
from bot.moderation.policy import ScreeningPolicy
from generator.contract.edits import EditSpec
from generator.contract.encoders import PromptLimit, choose_encoder
from generator.contract.errors import MemberError, PromptError
from generator.contract.images import DEFAULT_INIT_STRENGTH, starts_from, steers_towards
from generator.contract.jobs import JobSpec, ParentJob, PictureRef
from generator.contract.prompts import clean_text, parse_prompts
from generator.contract.quality import DEFAULT_QUALITY, MAX_PRESET_CUTOUTS, QUALITIES, preset
from generator.contract.settings import MAX_SEED, MIN_SIDE, SIDE_MULTIPLE
from generator.contract.tokens import check_lengths
from generator.contract.weights import DEFAULT_CLIP_MODEL

NEGATIVE_WEIGHT = -0.5


class Refused(Exception):
    """A request that cannot be met; the message is shown to the member as it is."""


@dataclass(frozen=True)
class Ask:
    """What a member asked for, as they said it (None: they did not say)."""

    prompt: str = ""
    negative: str | None = None
    iterations: int | None = None
    seed: int | None = None
    size: int | None = None
    quality: str | None = None  # None: normal, with the server's default iterations
    timelapse: bool | None = None  # None: as the server's default
    tile: bool = False  # a seamless tile, wrapping around both axes


@dataclass(frozen=True)
class Edit:
    """An edit to draw: how (`spec`), the tokens it starts from (a continue state, in base64)
    and the size in pixels of their grid, which is the size the edit draws at."""

    spec: EditSpec
    state: str = field(repr=False)
    width: int
    height: int


@dataclass(frozen=True)
class Rules:
    """What the operator decides for every drawing (from the config)."""

    limits: HardLimits = field(default_factory=HardLimits)
    main_clip: str = DEFAULT_CLIP_MODEL  # [models] clip, which every worker holds
    max_cutouts: int = MAX_PRESET_CUTOUTS  # [worker] cutouts: the most a worker draws
    text_encoder: str = "clip"  # clip, multilingual or auto ([models] text_encoder)
    # The multilingual encoder's tokenizer where this host has it (else the worker checks).
    multilingual_limit: PromptLimit | None = None
    screening: ScreeningPolicy = field(default_factory=ScreeningPolicy)


def build(
    ask: Ask,
    settings: GuildSettings,
    rules: Rules,
    language: str,
    *,
    use: str | None = None,
    picture: GivenPicture | None = None,
    parent: ParentJob | None = None,
    edit: Edit | None = None,
) -> tuple[JobSpec, list[Lowered]]:
    """The spec of what `ask` asks for on a server with `settings`; Refused saying why not.
    `use` says how a picture is used when it is not `picture` yet (one still to fetch: see
    `with_picture`). An `edit` draws at its grid's size, which no limit can lower."""
    limits = effective(settings, rules.limits)
    use = picture.use if picture is not None else use
    prompt, encoder = _prompt(ask, rules, language, use)
    notices: list[Lowered] = []
    quality, lowered = clamp(ask.quality or DEFAULT_QUALITY, limits.max_quality, name=N_("Quality"))
    notices += [lowered] if lowered else []
    chosen = preset(quality)
    if encoder != "clip" and len(chosen.clip_models) > 1:
        single = (q for q in QUALITIES if len(preset(q).clip_models) == 1)
        raise Refused(
            tr(
                language,
                "Prompts in languages other than English can be drawn at {qualities} quality.",
                qualities=", ".join(tr(language, QUALITY_NAMES[q]) for q in single),
            )
        )
    default = limits.default_iterations if ask.quality is None else chosen.iterations
    iterations, lowered = clamp(
        ask.iterations or default, limits.max_iterations, name=N_("Iterations")
    )
    notices += [lowered] if lowered else []
    if edit is not None:
        width, height = _edit_size(edit, limits.max_size, language)
    else:
        asked_size = ask.size or min(chosen.size, limits.max_size)
        size, lowered = clamp(asked_size, limits.max_size, name=N_("Size"))
        notices += [lowered] if lowered else []
        width = height = size - size % SIDE_MULTIPLE
    spec = JobSpec(
        prompt=prompt,
        seed=ask.seed if ask.seed is not None else secrets.randbelow(MAX_SEED + 1),
        iterations=iterations,
        width=width,
        height=height,
        quality=quality,
        cutouts=min(chosen.cutouts, rules.max_cutouts),
        clip_models=chosen.models(rules.main_clip),
        text_encoder=encoder,
        auto_stop=limits.auto_stop or None,
        timelapse=settings.timelapse if ask.timelapse is None else ask.timelapse,
        progress_every_s=limits.progress_interval_s,
        parent=parent,
        screening=rules.screening.spec(settings),
        edit=edit.spec if edit is not None else None,
        tile="xy" if ask.tile else "",
        **picture_fields(picture),
    )
    return spec, notices


def _edit_size(edit: Edit, most: int, language: str) -> tuple[int, int]:
    """The size an edit draws at: its grid's, which has to be within the server's largest
    size (a smaller one would no longer fit the tokens)."""
    if max(edit.width, edit.height) > most or min(edit.width, edit.height) < MIN_SIDE:
        raise Refused(
            tr(
                language,
                "This picture is {width}x{height} pixels; this server edits pictures from "
                "{least}x{least} to {most}x{most}.",
                width=edit.width,
                height=edit.height,
                least=MIN_SIDE,
                most=most,
            )
        )
    return edit.width, edit.height


def with_picture(spec: JobSpec, picture: GivenPicture) -> JobSpec:
    """`spec` naming `picture`, once it has been fetched."""
    return JobSpec(**{**dict(spec), **picture_fields(picture)})


def picture_fields(picture: GivenPicture | None) -> dict[str, Any]:
    """The spec's fields for `picture`: the one it starts from, held by its strength, and the
    ones it steers towards."""
    if picture is None:
        return {}
    image = picture.image
    ref = PictureRef(name=image.name, sha256=image.sha256, weight=image.weight)
    return {
        "init_image": ref if starts_from(picture.use) else None,
        "init_strength": picture.strength,
        "image_prompts": (ref,) if steers_towards(picture.use) else (),
    }


def refused(language: str, error: MemberError) -> Refused:
    """What the member gave, refused: the reason as a sentence in their language."""
    message = tr(language, error.reason.template, **error.values)
    sentence = f"{message[:1].upper()}{message[1:]}"
    return Refused(tr(language, "{reason}.", reason=sentence))


def _prompt(ask: Ask, rules: Rules, language: str, use: str | None) -> tuple[str, str]:
    """The prompt as the worker gets it, and the text encoder that reads it, each part checked
    against that encoder's token limit. With a picture to steer towards (`use`), the prompt may
    be empty."""
    prompt, negative = clean_text(ask.prompt), clean_text(ask.negative or "")
    if not prompt and not negative and use is not None:
        if steers_towards(use):
            return "", "clip"
        raise Refused(
            tr(
                language,
                "A picture to start from needs a prompt too: say what to draw, or let "
                "the picture steer (steer or both).",
            )
        )
    if negative:
        prompt = f"{prompt} | {negative}:{NEGATIVE_WEIGHT}"
    try:
        prompts = parse_prompts(prompt)
        encoder = choose_encoder(rules.text_encoder, prompts)
        if encoder == "clip":
            check_lengths(prompts)
        elif rules.multilingual_limit is not None:
            rules.multilingual_limit.check(prompts)
    except PromptError as error:
        raise refused(language, error) from None
    return prompt, encoder


def legacy(
    row: Mapping[str, Any],
    settings: GuildSettings,
    rules: Rules,
    picture: tuple[str, str, float] | None,
) -> JobSpec:
    """The spec of a job stored by a version before specs (0.2), as that version would have
    drawn it: its quality's cutouts and models and the server's early stopping and progress
    interval as they are now (it read them when the job started); `picture` is the name,
    SHA-256 and weight of the picture it was given."""
    chosen = preset(row["quality"])
    refs: dict[str, Any] = {}
    if picture is not None and row["image_use"] is not None:
        name, sha256, weight = picture
        ref = PictureRef(name=name, sha256=sha256, weight=weight)
        refs = {
            "init_image": ref if starts_from(row["image_use"]) else None,
            "init_strength": row["init_strength"] or DEFAULT_INIT_STRENGTH,
            "image_prompts": (ref,) if steers_towards(row["image_use"]) else (),
        }
    limits = effective(settings, rules.limits)
    parent = row["parent_id"]
    return JobSpec(
        prompt=row["prompt"],
        seed=row["seed"],
        iterations=row["iterations"],
        width=row["size"],
        height=row["size"],
        quality=row["quality"],
        cutouts=min(chosen.cutouts, rules.max_cutouts),
        clip_models=chosen.models(rules.main_clip),
        text_encoder=row["text_encoder"],
        auto_stop=limits.auto_stop or None,
        timelapse=bool(row["timelapse"]),
        progress_every_s=limits.progress_interval_s,
        parent=ParentJob(id=parent, how="continue") if parent is not None else None,
        **refs,
    )
