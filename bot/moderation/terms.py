"""Blocked terms, matched the way Discord's AutoMod means them and through what evaders type.

A term is a word or phrase with AutoMod's wildcards: `cat` matches the whole word, `cat*` words
that start with it, `*cat` words that end with it, `*cat*` anywhere. Before matching, the prompt
and the terms go through the same normalisation: Unicode NFKC (full-width forms, half-width
katakana), case folding, accents and other combining marks dropped (the kana voicing marks
kept), zero-width and other invisible characters dropped, katakana read as hiragana, and runs of
three or more single letters separated by dots, spaces, dashes and the like joined into one word
("n.a.k.e.d", "n a k e d"). A term then matches letters repeated ("naaaked") and common
digit-for-letter swaps ("n4k3d"), but only at word boundaries, so `ass` does not fire inside
"class" or "assassin". Scripts written without spaces (Chinese, Japanese) have a word boundary
between any two characters, so a term in them matches wherever it stands.

An allow list (AutoMod's, or the operator's `allowed_terms`) takes text out of a match: what an
allowed term matches is never blocked, so allowing `裸足` (barefoot) keeps `裸` blocked elsewhere.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

# What evaders put between letters: spaces, dots, dashes, underscores, asterisks and the like.
SEPARATORS = r"[\s.\-_*·・•,/\\|~'\"`^:;]+"
# Digits and symbols read as letters.
LOOK_ALIKES = {
    "a": "a4@",
    "b": "b8",
    "e": "e3",
    "g": "g9",
    "i": "i1!|",
    "l": "l1|",
    "o": "o0",
    "s": "s5$",
    "t": "t7",
}
WORD_CHARACTERS = r"\w@$"  # a "!" or "|" after a word ends it, though either may stand for a letter
KANA_MARKS = "\u3099\u309a"  # the voicing marks of kana: part of the letter, not decoration
KATAKANA = range(0x30A1, 0x30F7)
SPACELESS = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
)


def _spaceless(character: str) -> bool:
    code = ord(character)
    return any(low <= code <= high for low, high in SPACELESS)


def normalise(text: str) -> str:
    """`text` as terms are matched against it (see the module's docstring)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = []
    for character in unicodedata.normalize("NFD", folded):
        category = unicodedata.category(character)
        if category == "Mn" and character not in KANA_MARKS:
            continue
        if category == "Cf":  # zero-width spaces and joiners, soft hyphens, direction marks
            continue
        kept.append(chr(ord(character) - 0x60) if ord(character) in KATAKANA else character)
    return _joined_letters(unicodedata.normalize("NFC", "".join(kept)))


def _joined_letters(text: str) -> str:
    """Runs of three or more single characters between separators joined into one word."""
    parts = re.split(f"({SEPARATORS})", text)
    words, gaps = parts[::2], parts[1::2]
    out: list[str] = []
    index = 0
    while index < len(words):
        end = index
        while end + 1 < len(words) and _single(words[end]) and _single(words[end + 1]):
            end += 1
        if end - index >= 2:
            out.append("".join(words[index : end + 1]))
        else:
            out.append(words[index])
            end = index
        if end < len(gaps):
            out.append(gaps[end])
        index = end + 1
    return "".join(out)


def _single(word: str) -> bool:
    """One letter, maybe with a "!" or "?" after it ("n.a.k.e.d!")."""
    return len(word.rstrip("!?")) == 1


@dataclass(frozen=True)
class Term:
    """One blocked or allowed term, as written (with AutoMod's wildcards)."""

    text: str

    @property
    def core(self) -> str:
        return normalise(self.text.strip().strip("*"))

    def pattern(self) -> re.Pattern[str]:
        return _pattern(self.text.strip())


@cache
def _pattern(written: str) -> re.Pattern[str]:
    core = normalise(written.strip("*"))
    body = SEPARATORS.join(_word_pattern(word) for word in core.split())
    starts_anywhere, ends_anywhere = written.startswith("*"), written.endswith("*")
    left = "" if starts_anywhere or _spaceless(core[:1]) else f"(?<![{WORD_CHARACTERS}])"
    right = "" if ends_anywhere or _spaceless(core[-1:]) else f"(?![{WORD_CHARACTERS}])"
    # A wildcard lets the word go on past the term, so the whole word is what matched.
    before = f"[{WORD_CHARACTERS}]*" if starts_anywhere else ""
    after = f"[{WORD_CHARACTERS}]*" if ends_anywhere else ""
    return re.compile(f"{left}{before}{body}{after}{right}")


def _word_pattern(word: str) -> str:
    """A word, each letter as itself or a look-alike, each run of a letter repeated at will."""
    runs = re.finditer(r"(.)\1*", word)
    parts = []
    for run in runs:
        letter, count = run.group(1), len(run.group(0))
        choices = re.escape(LOOK_ALIKES.get(letter, letter))
        parts.append(f"[{choices}]{{{count},}}")
    return "".join(parts)


@dataclass(frozen=True)
class Blocked:
    """A blocked term found in a prompt: the text that matched, as normalised, and the term."""

    found: str
    term: str


class TermList:
    """Blocked terms and the allowed ones that take words out of them."""

    def __init__(self, blocked: Iterable[str], allowed: Iterable[str] = ()) -> None:
        self.blocked = tuple(Term(t) for t in blocked if t.strip().strip("*").strip())
        self.allowed = tuple(Term(t) for t in allowed if t.strip().strip("*").strip())

    def __bool__(self) -> bool:
        return bool(self.blocked)

    def find(self, parts: Sequence[str]) -> Blocked | None:
        """The first blocked term in `parts` (a prompt's parts), if any."""
        for part in parts:
            text = normalise(part)
            allowed = [m.span() for t in self.allowed for m in t.pattern().finditer(text)]
            for term in self.blocked:
                for match in term.pattern().finditer(text):
                    start, end = match.span()
                    if not any(low <= start and end <= high for low, high in allowed):
                        return Blocked(match.group(0), term.text)
        return None
