"""What pictures and prompts are screened for, what a worker says of each picture it sends, and
the one rule that reads it.

A worker scores every picture it sends (each progress preview, the final picture, the frames of
a time-lapse) with the main CLIP: the cosine similarity between the picture's image embedding
and each concept's text embedding (`BUILTIN_CONCEPTS`, then the spec's own: the operator's and
the server's), and, for the CLIP models Q16 learned prompts for (`LEARNED_PROMPT_MODELS`), Q16's
probability that the picture is inappropriate. The scores travel with the picture (`Scores`);
the bot decides with `crossed` what the picture came too close to. A picture that was not
screened although its job asked for it (the worker's screening failed) counts as crossing:
screening fails closed.

A job whose spec asks for `meaning` is also refused before its first step when a positive part
of its prompt, embedded by the text encoder that would draw it, comes too close to one of
`MEANING_CONCEPTS` (text against text, in the main CLIP's text space).

The thresholds are cosine similarities chosen from what CLIP ViT-B/32 gives photographs; they
were not measured on this method's pictures. `docs/moderation.md` says what that means.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

FROZEN = ConfigDict(frozen=True, extra="forbid", strict=True)
MAX_CONCEPT_CHARS = 100
MAX_JOB_CONCEPTS = 60  # the operator's and a server's together
MAX_SERVER_CONCEPTS = 20
# Q16's learned prompts classify as inappropriate where this probability is the larger of two.
LEARNED_THRESHOLD = 0.5
# The CLIP models Q16 learned prompts for, by their names in `generator.contract.weights`.
LEARNED_PROMPT_MODELS = ("ViT-B/32", "ViT-B/16", "ViT-L/14")
FAILED = "screening failed"  # what `crossed` names for a picture the worker could not screen
LEARNED = "Q16 inappropriate content"

ConceptText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CONCEPT_CHARS),
]
Threshold = Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]


class Concept(BaseModel):
    """Something a picture (or a prompt) must not come this close to: a text, and the cosine
    similarity with its CLIP text embedding at which it does."""

    model_config = FROZEN

    text: ConceptText
    threshold: Threshold


def _concepts(threshold: float, *texts: str) -> tuple[Concept, ...]:
    return tuple(Concept(text=text, threshold=threshold) for text in texts)


# Sexual content and gore, for pictures, on every CLIP model.
BUILTIN_CONCEPTS: tuple[Concept, ...] = (
    *_concepts(
        0.27,
        "a photo of a naked person",
        "nudity",
        "pornography",
        "a sexual act",
        "exposed genitals",
        "naked breasts",
    ),
    *_concepts(
        0.27,
        "gore",
        "a mutilated body",
        "a bloody corpse",
        "open wounds and blood",
    ),
)
# For prompts, by meaning: text against text sits higher than picture against text.
MEANING_CONCEPTS: tuple[Concept, ...] = _concepts(
    0.9,
    "naked",
    "nude",
    "nudity",
    "pornography",
    "sex",
    "a sexual act",
    "genitals",
    "gore",
    "a mutilated body",
    "a dead body covered in blood",
)


class ScreeningSpec(BaseModel):
    """How a job is screened, decided at submit with the rest of its spec: whether its pictures
    are (`pictures`), whether its prompt is checked by meaning (`meaning`), and the concepts it
    adds to `BUILTIN_CONCEPTS` (the operator's, then its server's)."""

    model_config = FROZEN

    pictures: bool = True
    meaning: bool = False
    concepts: Annotated[tuple[Concept, ...], Field(max_length=MAX_JOB_CONCEPTS)] = ()

    def picture_concepts(self) -> tuple[Concept, ...]:
        """Every concept a picture is scored against, in the order of `Scores.concepts`."""
        return (*BUILTIN_CONCEPTS, *self.concepts)


class Scores(BaseModel):
    """What the worker's screening said of one picture (of a time-lapse: the highest of its
    frames for each): the cosine similarity with each of the job's `picture_concepts`, in
    their order, and Q16's probability of inappropriate content (None where the main CLIP has
    no learned prompts)."""

    model_config = FROZEN

    concepts: Annotated[
        tuple[Annotated[float, Field(allow_inf_nan=False)], ...],
        Field(max_length=len(BUILTIN_CONCEPTS) + MAX_JOB_CONCEPTS),
    ]
    learned: Annotated[float | None, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = None


def crossed(spec: ScreeningSpec, scores: Scores | None) -> tuple[str, ...]:
    """What a picture came too close to: the texts of the concepts it crossed, `LEARNED` when
    Q16 found it inappropriate, and `FAILED` when it should have been screened and was not
    (no scores, or scores for other concepts). Empty: it may be shown anywhere."""
    if not spec.pictures:
        return ()
    concepts = spec.picture_concepts()
    if scores is None or len(scores.concepts) != len(concepts):
        return (FAILED,)
    found = [
        concept.text
        for concept, score in zip(concepts, scores.concepts, strict=True)
        if score >= concept.threshold
    ]
    if scores.learned is not None and scores.learned >= LEARNED_THRESHOLD:
        found.append(LEARNED)
    return tuple(found)
