"""How jobs look in Discord: the job card in its states, and small text helpers.

Everything a member typed goes into embeds, and every message is sent with mentions disabled,
so a prompt such as "@everyone look" pings nobody. Cards are public, so they speak the server's
language (`language` below), not the requester's.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import discord
from PIL import Image

from bot.i18n import N_, render_notice, tr
from bot.jobs.edits import edit_name
from bot.jobs.events import (
    JobEnded,
    JobEvent,
    JobHandedOver,
    JobPaused,
    JobPreparing,
    JobProgress,
    JobReported,
    JobStarting,
    PictureWithheld,
    PromptRefused,
    QueueChanged,
    WorkersChanged,
)
from bot.jobs.store import JobRow, JobStatus
from bot.limits import QUALITY_NAMES
from generator.contract.edits import ENCODED
from generator.contract.jobs import JobSpec
from generator.contract.quality import DEFAULT_QUALITY
from generator.contract.reasons import COMPILING, reason_of
from generator.media.animation import suffix_of

NO_MENTIONS = discord.AllowedMentions.none()
BAR_WIDTH = 20
REFRESHED_POSITIONS = 10  # waiting cards kept current; later ones update as they move up
COLOURS = {
    "queued": discord.Colour.light_grey(),
    "running": discord.Colour.blurple(),
    "done": discord.Colour.green(),
    "failed": discord.Colour.red(),
    "cancelled": discord.Colour.dark_grey(),
}
# How a job uses the picture it was given, as its card says it.
PICTURE_USES = {
    "start": N_("Starts from it (strength {strength:g})"),
    "steer": N_("Steers towards it"),
    "both": N_("Starts from it (strength {strength:g}) and steers towards it"),
}
TITLES = {
    "queued": N_("Waiting in the queue · job {job}"),
    "running": N_("Drawing · job {job}"),
    "done": N_("Finished · job {job}"),
    "failed": N_("Could not draw this · job {job}"),
    "cancelled": N_("Cancelled · job {job}"),
}


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(text: str, limit: int = 1000) -> str:
    """Member text made inert for Discord markdown."""
    return discord.utils.escape_markdown(shorten(text, limit))


def duration(language: str, seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return tr(language, "{hours} h {minutes:02d} min", hours=hours, minutes=minutes)
    if minutes:
        return tr(language, "{minutes} min {seconds:02d} s", minutes=minutes, seconds=secs)
    return tr(language, "{seconds} s", seconds=secs)


def withheld_lines(language: str, job: JobRow, line: str) -> list[str]:
    """What a card says of a picture it does not show: in the card's language and, where the
    requester's differs, in theirs too, since it tells them where they may draw it."""
    said = [tr(language, line)]
    if job.language is not None and job.language != language:
        said.append(tr(job.language, line))
    return said


def progress_bar(step: int, total: int) -> str:
    filled = round(BAR_WIDTH * step / total) if total else 0
    return "▰" * filled + "▱" * (BAR_WIDTH - filled) + f" {100 * step / max(total, 1):.0f}%"


WITHHELD = N_(
    "The picture was withheld: the screening found it may not be suitable for this channel. "
    "It can be drawn in an age-restricted channel."
)
TIMELAPSE_WITHHELD = N_(
    "The time-lapse was withheld: the screening found it may not be suitable for this channel."
)


def picture_name(job_id: int) -> str:
    """The file name of a job's picture on its card (Discord adds "SPOILER_" to a spoiler's)."""
    return f"pseudo-dalle-{job_id}.png"


def picture_file(job: JobRow, png: bytes, *, spoiler: bool = False) -> discord.File:
    """The picture; as a spoiler, a file of its own (an embed's image cannot be one)."""
    return discord.File(io.BytesIO(png), filename=picture_name(job.id), spoiler=spoiler)


def thumbnail_file(job: JobRow, png: bytes) -> discord.File:
    """The bot's small copy of the picture the job was given (never the member's upload)."""
    return discord.File(io.BytesIO(png), filename=f"pseudo-dalle-{job.id}-given.png")


TILE_LINE = N_("it wraps around: the second picture shows it 2x2")


def tiled(png: bytes) -> bytes:
    """A seamless tile's picture (a worker's PNG) 2x2, to show that it has no seam."""
    with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
        picture = image.convert("RGB")
    wall = Image.new("RGB", (2 * picture.width, 2 * picture.height))
    for x in (0, picture.width):
        for y in (0, picture.height):
            wall.paste(picture, (x, y))
    out = io.BytesIO()
    wall.save(out, format="PNG")
    return out.getvalue()


def tiled_file(job: JobRow, png: bytes, *, spoiler: bool = False) -> discord.File:
    """The tile 2x2, beside the final picture."""
    name = f"pseudo-dalle-{job.id}-tiled.png"
    return discord.File(io.BytesIO(png), filename=name, spoiler=spoiler)


def timelapse_file(job: JobRow, animation: bytes, *, spoiler: bool = False) -> discord.File:
    """The drawing taking shape, beside the final picture: Discord plays it inline."""
    name = f"pseudo-dalle-{job.id}-timelapse{suffix_of(animation)}"
    return discord.File(io.BytesIO(animation), filename=name, spoiler=spoiler)


def card(
    job: JobRow,
    lines: list[str],
    language: str,
    *,
    image: bool = False,
    thumbnail: bool = False,
) -> discord.Embed:
    """The job card: prompt, requester and settings, plus the state's own lines; `thumbnail`
    shows the picture it was given."""
    spec = job.spec
    embed = discord.Embed(
        title=tr(language, TITLES[job.status], job=job.id),
        description=quote(spec.prompt),
        colour=COLOURS[job.status],
    )
    embed.add_field(name=tr(language, "Requested by"), value=f"<@{job.user_id}>")
    embed.add_field(name=tr(language, "Seed"), value=str(spec.seed))
    embed.add_field(name=tr(language, "Size"), value=f"{spec.width}x{spec.height}")
    if spec.quality != DEFAULT_QUALITY:
        embed.add_field(
            name=tr(language, "Quality"), value=tr(language, QUALITY_NAMES[spec.quality])
        )
    if spec.text_encoder != "clip":
        embed.add_field(name=tr(language, "Read by"), value=tr(language, "multilingual encoder"))
    if spec.image_use is not None:
        use = tr(language, PICTURE_USES[spec.image_use], strength=spec.init_strength)
        embed.add_field(name=tr(language, "Picture given"), value=use, inline=False)
    if spec.edit is not None:
        embed.add_field(name=tr(language, "Edit"), value=edit_line(language, spec), inline=False)
    if spec.tile:
        embed.add_field(name=tr(language, "Seamless tile"), value=tr(language, TILE_LINE))
    if lines:
        embed.add_field(name=tr(language, "Status"), value="\n".join(lines), inline=False)
    if job.notice:
        note = render_notice(language, job.notice)
        embed.add_field(name=tr(language, "Note"), value=note, inline=False)
    if image:
        embed.set_image(url=f"attachment://{picture_name(job.id)}")
    if thumbnail:
        embed.set_thumbnail(url=f"attachment://pseudo-dalle-{job.id}-given.png")
    return embed


def edit_line(language: str, spec: JobSpec) -> str:
    """What edit a job is, of which picture: "Vary (Region) of job 12: B2, B3, C2"; for an edit
    whose tokens came from the encoder, a line saying so."""
    assert spec.edit is not None
    edit = tr(language, edit_name(spec.edit.kind, spec.edit.direction, spec.edit.factor))
    cells = ", ".join(spec.edit.cells)
    if spec.parent is None:
        of = N_("{edit} of a picture given: {cells}") if cells else N_("{edit} of a picture given")
        line = tr(language, of, edit=edit, cells=cells)
    else:
        of = N_("{edit} of job {job}: {cells}") if cells else N_("{edit} of job {job}")
        line = tr(language, of, edit=edit, job=spec.parent.id, cells=cells)
    if spec.edit.kind not in ENCODED:
        return line
    lossy = N_(
        "The picture was scaled and turned back into tokens by the dVAE encoder, the one "
        "lossy step: fine detail may differ."
    )
    return f"{line}\n{tr(language, lossy)}"


def queued_lines(language: str, position: int, waiting: int, eta_s: float | None) -> list[str]:
    if eta_s is None:
        return [
            tr(
                language,
                "Position {position} of {waiting} · start time not known yet",
                position=position,
                waiting=waiting,
            )
        ]
    return [
        tr(
            language,
            "Position {position} of {waiting} · starts in about {eta}",
            position=position,
            waiting=waiting,
            eta=duration(language, eta_s),
        )
    ]


def running_lines(language: str, step: int, total: int, rate: float) -> list[str]:
    line = tr(
        language, "Iteration {step}/{total} · {rate:.1f} it/s", step=step, total=total, rate=rate
    )
    if rate > 0:
        left = duration(language, (total - step) / rate)
        line += tr(language, " · about {time} left", time=left)
    return [progress_bar(step, total), line]


def finished_lines(language: str, job: JobRow) -> list[str]:
    took = duration(language, job.seconds or 0)
    lines = [tr(language, "{steps} iterations in {time}", steps=job.steps, time=took)]
    total = job.spec.iterations
    if job.status == JobStatus.DONE and job.steps < total:  # auto-stop ended it
        lines.append(
            tr(
                language,
                "Stopped early at iteration {steps} of {total}: the picture had stopped improving.",
                steps=job.steps,
                total=total,
            )
        )
    return lines


def sharing_lines(language: str, sharing: tuple[int, ...]) -> list[str]:
    if not sharing:
        return []
    others = ", ".join(tr(language, "job {job}", job=other) for other in sharing)
    return [tr(language, "Sharing the worker with {jobs}", jobs=others)]


@dataclass(frozen=True)
class CardWish:
    """What a job's card should show now: the job as it was, text lines, maybe a picture;
    `final` cards get the Reroll, Continue, Delete and Report buttons, and the time-lapse when
    the job asked for one. `timelapse_limit` is set once Discord refused a time-lapse as too
    large; `spoiler`: the pictures are shown only as spoilers."""

    job: JobRow
    lines: tuple[str, ...]
    png: bytes | None = None
    final: bool = False
    timelapse: bytes | None = None
    timelapse_limit: int | None = None
    spoiler: bool = False


def wishes(event: JobEvent, language_of: Callable[[JobRow], str]) -> list[CardWish]:
    """The cards a job event changes, and what they should show, each in its server's language
    (`language_of`)."""
    if isinstance(event, WorkersChanged | PictureWithheld | PromptRefused | JobReported):
        return []
    if isinstance(event, QueueChanged):
        total = len(event.waiting)
        return [
            CardWish(
                w.job, tuple(queued_lines(language_of(w.job), w.position, total, w.starts_in_s))
            )
            for w in event.waiting
            if w.position <= REFRESHED_POSITIONS or w.job.id == event.added
        ]
    return [_wish(event, language_of(event.job))]


def preparing_line(language: str, event: JobPreparing) -> str:
    """What the worker does before the job's first step: compiling for its size (once a size),
    loading the encoder, waiting for memory."""
    reason = tr(language, reason_of(event.reason).template)
    if event.reason != COMPILING.code:
        return tr(language, "Preparing: {reason}", reason=reason)
    spec = event.job.spec
    size = f"{spec.width}x{spec.height}"
    return tr(
        language,
        "Preparing: {reason} for {size}; the first picture of each size waits for it",
        reason=reason,
        size=size,
    )


def _wish(
    event: JobStarting | JobPreparing | JobProgress | JobEnded | JobHandedOver | JobPaused,
    language: str,
) -> CardWish:
    png, final, timelapse, spoiler = None, False, None, False
    if isinstance(event, JobStarting):
        lines = [tr(language, "Starting…"), *sharing_lines(language, event.sharing)]
    elif isinstance(event, JobPreparing):
        lines = [preparing_line(language, event), *sharing_lines(language, event.sharing)]
    elif isinstance(event, JobProgress):
        lines = running_lines(language, event.step, event.total, event.iterations_per_second)
        lines += sharing_lines(language, event.sharing)
        lines += withheld_lines(language, event.job, WITHHELD) if event.job.withheld else []
        png, spoiler = event.png, event.spoiler
    elif isinstance(event, JobEnded):
        job = event.job
        lines, png, final = _ended_lines(language, job), event.png, job.status == JobStatus.DONE
        timelapse, spoiler = event.timelapse, event.spoiler
        if job.withheld:
            lines += withheld_lines(language, job, WITHHELD)
        elif event.timelapse_withheld:
            lines += withheld_lines(language, job, TIMELAPSE_WITHHELD)
    elif isinstance(event, JobHandedOver):
        lines = [
            tr(
                language,
                "Worker {worker} stopped; the next free worker starts this again",
                worker=event.worker,
            )
        ]
    elif event.continues:
        lines = [tr(language, "Still drawing; this card catches up when the bot is back")]
    else:
        lines = [tr(language, "Waiting for the bot to come back")]
    return CardWish(event.job, tuple(lines), png, final, timelapse, spoiler=spoiler)


def _ended_lines(language: str, job: JobRow) -> list[str]:
    if job.status == JobStatus.FAILED:
        # Why, in the card's language and, where the requester's differs, in theirs too: it
        # tells them what to change.
        asked_in = () if job.language in (None, language) else (job.language,)
        error = job.error
        return [quote(render_notice(lang, error), 300) for lang in (language, *asked_in) if error]
    if job.started_at is None:  # cancelled while it waited
        return []
    return finished_lines(language, job)
