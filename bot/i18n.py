"""The bot's words in the member's language: gettext catalogs, one per language.

Messages are written in English in the code, marked `tr(language, "…", name=value)` (or `N_`
where they are declared and translated later), and translated from `bot/locales/<language>/
LC_MESSAGES/pseudo_dalle.po`. Babel extracts them (`make messages`) and reads the catalogs: the
`.po` files are compiled in memory on first use, so no compiled file is kept in the repository.
Replies follow the member's Discord locale, job cards the server's; anything else falls back to
English. Slash command names and descriptions go through `CatalogTranslator`.

Notes stored with a job (who cancelled it, why it restarted) are kept as the English message
and its values (`notice`), and why a worker could not draw it as the reason's code and values
(`reason_notice`, `generator.contract.reasons`); both are put into words when a card shows
them (`render_notice`).
"""

from __future__ import annotations

import gettext
import io
import json
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from generator.contract.reasons import REASONS, Reason

DOMAIN = "pseudo_dalle"
LOCALES = Path(__file__).resolve().parent / "locales"
SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "ja")  # English is the source; every other one has a catalog


def N_(message: str) -> str:
    """Mark `message` for extraction where it is declared; `tr` translates it where used."""
    return message


@cache
def catalog(language: str) -> gettext.NullTranslations:
    """The compiled catalog of `language` (English: the messages as written)."""
    if language == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    with (LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as po:
        messages = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, messages)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def tr(language: str, message: str, **values: object) -> str:
    """`message` in `language`, with its `{name}` fields filled from `values`."""
    text = catalog(language).gettext(message)
    return text.format(**values) if values else text


def language_of(locale: str | None) -> str:
    """The shipped language for a Discord locale such as "ja" or "en-US"."""
    code = (locale or "").split("-")[0].lower()
    return code if code in LANGUAGES else SOURCE_LANGUAGE


def notice(message: str, **values: object) -> str:
    """A note to store with a job, to be put into words in each reader's language."""
    return json.dumps({"message": message, "values": values}, ensure_ascii=False)


def reason_notice(reason: Reason | str, values: dict[str, str | int] | None = None) -> str:
    """Why a job could not be drawn (a reason or its code), to store with it."""
    code = reason.code if isinstance(reason, Reason) else reason
    return json.dumps({"reason": code, "values": values or {}}, ensure_ascii=False)


def render_notice(language: str, stored: str) -> str:
    """A stored note in `language`. Plain text (a note of an earlier version) is translated
    when the catalog knows it, else shown as it is."""
    try:
        data = json.loads(stored)
        values = dict(data["values"])
        if "reason" in data:
            return tr(language, REASONS[str(data["reason"])].template, **values)
        message = str(data["message"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return tr(language, stored)
    return tr(language, message, **values)
