"""Why something could not be done, as a code with values: what a worker sends the bot (`Failed`,
`Preparing`), what a refused prompt or picture carries (`MemberError`), and what the bot keeps
with a job.

Each code's English sentence is written here, once. The bot puts it into each member's language
from its message catalogs (a test fails while a sentence has no translation), and the command
line prints it as it is. A worker never sends a sentence, so a sentence changed here cannot
fall back to English on a card unnoticed: its catalog entry goes missing, and the test says so.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reason:
    """`code` and the English `template` whose ``{fields}`` its values fill."""

    code: str
    template: str
    fields: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = {name for _, name, _, _ in string.Formatter().parse(self.template) if name}
        object.__setattr__(self, "fields", frozenset(names))

    def say(self, **values: object) -> str:
        """The sentence in English, filled in."""
        return self.template.format(**values) if self.fields else self.template


REASONS: dict[str, Reason] = {}


def _declare(code: str, template: str) -> Reason:
    if code in REASONS:
        raise ValueError(f"reason {code!r} is declared twice")
    REASONS[code] = reason = Reason(code, template)
    return reason


def reason_of(code: str) -> Reason:
    """The reason declared as `code`; KeyError for an unknown one."""
    return REASONS[code]


def check_values(code: str, values: dict[str, str | int]) -> None:
    """ValueError unless `code` is declared and `values` fill exactly its fields."""
    declared = REASONS.get(code)
    if declared is None:
        raise ValueError(f"unknown reason {code!r}")
    if set(values) != declared.fields:
        raise ValueError(
            f"reason {code!r} takes {sorted(declared.fields) or 'no values'}, got {sorted(values)}"
        )


# -- prompts ------------------------------------------------------------------------------------
PROMPT_TOO_MANY_CHARS = _declare(
    "prompt_too_many_chars", "prompt is too long ({length} characters, at most {most})"
)
PROMPT_EMPTY = _declare("prompt_empty", "prompt is empty: describe what to draw")
PROMPT_EMPTY_PART = _declare("prompt_empty_part", "prompt has an empty part: remove the extra '|'")
PROMPT_WEIGHT_WITHOUT_TEXT = _declare(
    "prompt_weight_without_text", "prompt part '{part}' has a weight but no text"
)
PROMPT_WEIGHT_NOT_FINITE = _declare(
    "prompt_weight_not_finite", "prompt weight must be a finite number, got '{weight}'"
)
PROMPT_NOTHING_POSITIVE = _declare(
    "prompt_nothing_positive", "prompt needs at least one part with a positive weight"
)
PROMPT_TOO_LONG_FOR_CLIP = _declare(
    "prompt_too_long_for_clip",
    "prompt '{part}' is too long for CLIP, which reads at most {most} tokens (about {most} "
    "short words); shorten it",
)
PROMPT_TOO_LONG_FOR_MULTILINGUAL = _declare(
    "prompt_too_long_for_multilingual",
    "prompt '{part}' is too long for the multilingual text encoder, which reads at most "
    "{most} tokens; shorten it",
)
PROMPT_MEANING = _declare(
    "prompt_meaning", "this prompt comes too close to “{concept}”, which is not allowed here"
)
NOTHING_TO_DRAW = _declare("nothing_to_draw", "give a PROMPT, an --image-prompt, or both")

# -- pictures given with a drawing --------------------------------------------------------------
PICTURE_TOO_BIG = _declare(
    "picture_too_big", "the picture is too big ({size} MiB; at most {limit} MiB)"
)
PICTURE_TYPE = _declare(
    "picture_type", "the picture is of type {kind}: send a PNG, JPEG, WebP or GIF"
)
NOT_A_PICTURE = _declare("not_a_picture", "the file is not a PNG, JPEG, WebP or GIF picture")
PICTURE_TOO_MANY_PIXELS = _declare(
    "picture_too_many_pixels", "the picture has too many pixels (at most {limit} million)"
)
PICTURE_DAMAGED = _declare("picture_damaged", "the picture is damaged or cut short")
PICTURE_NOT_FROM_DISCORD = _declare(
    "picture_not_from_discord", "the picture is not on Discord's servers"
)
PICTURE_NOT_FETCHED = _declare(
    "picture_not_fetched", "the picture could not be fetched from Discord; try again"
)
PICTURE_TIMED_OUT = _declare("picture_timed_out", "the picture took too long to arrive; try again")
PICTURE_MORE_THAN_DECLARED = _declare(
    "picture_more_than_declared", "the picture is too big (more than {limit} MiB)"
)

# -- edits of a picture -------------------------------------------------------------------------
EDIT_NO_TOKENS = _declare(
    "edit_no_tokens",
    "this picture carries no token grid, so it cannot be edited: only pictures pseudo-dalle 0.3 "
    "or later drew can be",
)
EDIT_TOKENS_DAMAGED = _declare("edit_tokens_damaged", "this picture's token grid is damaged")
EDIT_OTHER_DECODER = _declare(
    "edit_other_decoder",
    "this picture was drawn with another dVAE decoder (SHA-256 {decoder}…) than the one here, "
    "so it cannot be edited here",
)
EDIT_PICTURE_SIZE = _declare(
    "edit_picture_size",
    "this picture is {width}x{height} pixels but its token grid is for {grid}: it was changed "
    "after it was drawn",
)
EDIT_REGION_CELL = _declare("edit_region_cell", "there is no cell {cell}: pick from A1 to D4")
EDIT_NO_REGION = _declare("edit_no_region", "the region holds no part of the picture")
EDIT_SQUARE_ALREADY = _declare("edit_square_already", "this picture is square already")
EDIT_CANVAS_TOO_BIG = _declare(
    "edit_canvas_too_big",
    "the picture would grow to {width}x{height} pixels, and the largest side is {most}",
)

# -- what a worker says of a job ----------------------------------------------------------------
COMPILING = _declare("compiling", "compiling the networks")
LOADING_PICTURE_ENCODER = _declare("loading_picture_encoder", "loading the picture encoder")
WAITING_FOR_MEMORY = _declare(
    "waiting_for_memory", "waiting for a drawing to finish, to have the memory for this one"
)
OUT_OF_MEMORY = _declare("out_of_memory", "the GPU ran out of memory; try a smaller size")
OUT_OF_MEMORY_SHARED = _declare(
    "out_of_memory_shared",
    "the GPU ran out of memory; try a smaller size or ask the operator to lower [worker] max_batch",
)
JOB_TOO_BIG = _declare(
    "job_too_big",
    "this drawing is {width}x{height} pixels and needs about {need} GiB of memory, and its "
    "worker has {room} GiB for drawings: try a smaller size",
)
WORKER_ERROR = _declare("worker_error", "the worker hit an unexpected error")
CANNOT_START = _declare("cannot_start", "the worker could not start this drawing; its log says why")
STATE_UNUSABLE = _declare(
    "state_unusable", "the drawing this continues was saved in a form that cannot be read"
)
MISSING_MODEL = _declare(
    "missing_model", "This drawing needs the CLIP model {model}, which its worker does not hold."
)
TOO_MANY_CUTOUTS = _declare(
    "too_many_cutouts",
    "This drawing needs {cutouts} cutouts per step; its worker draws at most {most}.",
)
