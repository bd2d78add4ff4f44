"""Blocked terms as AutoMod means them, through what evaders type, without firing on innocent
words; and the rules that bring the operator's, the server's and AutoMod's together."""

from __future__ import annotations

from typing import Any

import pytest

from bot.moderation.rules import AutoModRules, KeywordRule, PromptRules, Source, steering_parts
from bot.moderation.terms import TermList, normalise

BLOCKED = ("naked", "ass", "cunt", "tit", "rape", "nsfw", "gore*", "*porn*", "裸", "ヌード", "エロ")
TERMS = TermList(BLOCKED)

# What evaders type, and the term each must still hit.
EVASIONS = [
    ("NAKED", "naked"),
    ("Naked people", "naked"),
    ("a nAkEd man", "naked"),
    ("ｎａｋｅｄ", "naked"),  # full-width
    ("Ｎａｋｅｄ　ｐｅｏｐｌｅ", "naked"),
    ("n a k e d", "naked"),
    ("n.a.k.e.d", "naked"),
    ("n-a-k-e-d", "naked"),
    ("n_a_k_e_d", "naked"),
    ("n*a*k*e*d", "naked"),
    ("n . a . k . e . d", "naked"),
    ("n.a.k.e.d!", "naked"),
    ("ｎ　ａ　ｋ　ｅ　ｄ", "naked"),  # full-width letters and ideographic spaces
    ("naaaaked", "naked"),
    ("nakeddd", "naked"),
    ("nnnaked", "naked"),
    ("n4k3d", "naked"),
    ("nak3d", "naked"),
    ("Ｎ４ｋ３ｄ", "naked"),
    ("n\u200baked", "naked"),  # a zero-width space
    ("na\u200dked", "naked"),  # a zero-width joiner
    ("nak\u00aded", "naked"),  # a soft hyphen
    ("na\u0301ke\u0300d", "naked"),  # combining accents
    ("ñáķéd", "naked"),  # precomposed accents
    ("a$$", "ass"),
    ("@ss", "ass"),
    ("A S S", "ass"),
    ("a.s.s", "ass"),
    ("c u n t", "cunt"),
    ("CUNT", "cunt"),
    ("t1t", "tit"),
    ("t!t", "tit"),
    ("r4pe", "rape"),
    ("r a p e", "rape"),
    ("n5fw", "nsfw"),
    ("goreshow", "gore*"),
    ("GORE", "gore*"),
    ("pornography", "*porn*"),
    ("xxpornxx", "*porn*"),
    ("p0rn", "*porn*"),
    ("裸の人", "裸"),
    ("全裸", "裸"),
    ("裸\u200b", "裸"),
    ("ヌード写真", "ヌード"),
    ("ぬーど", "ヌード"),  # hiragana for katakana
    ("ﾇｰﾄﾞ", "ヌード"),  # half-width katakana
    ("ヌ・ー・ド", "ヌード"),  # middle dots between the letters
    ("ヌ ー ド", "ヌード"),
    ("ヌーーード", "ヌード"),
    ("エロい絵", "エロ"),
    ("えろ", "エロ"),
    ("ｴﾛ", "エロ"),
]
INNOCENT = [
    "class",
    "a classy hat",
    "assassin",
    "bass guitar",
    "passage",
    "as you like",
    "Scunthorpe",
    "title",
    "petite",
    "titan",
    "grape",
    "drape",
    "scrape",
    "nakedness",  # a whole word of its own: `naked` blocks the word, not what contains it
    "snake",
    "gory",
    "pro",
    "a cat",
    "a b c",
    "説明",
    "エレベーター",
]


@pytest.mark.parametrize(("typed", "term"), EVASIONS)
def test_what_evaders_type_is_still_refused(typed: str, term: str) -> None:
    found = TERMS.find([typed])
    assert found is not None, normalise(typed)
    assert found.term == term


def test_there_are_forty_evasions_in_english_and_japanese() -> None:
    assert len(EVASIONS) >= 40
    assert sum(1 for typed, _ in EVASIONS if not typed.isascii()) >= 15


@pytest.mark.parametrize("typed", INNOCENT)
def test_innocent_words_that_contain_blocked_ones_are_accepted(typed: str) -> None:
    assert TERMS.find([typed]) is None


def test_wildcards_mean_what_automod_means() -> None:
    whole, prefix, suffix, anywhere = (TermList([t]) for t in ("cat", "cat*", "*cat", "*cat*"))
    cases = {"cat": (1, 1, 1, 1), "catalog": (0, 1, 0, 1), "bobcat": (0, 0, 1, 1)}
    cases["bobcats"] = (0, 0, 0, 1)
    for text, expected in cases.items():
        hits = [int(terms.find([text]) is not None) for terms in (whole, prefix, suffix, anywhere)]
        assert tuple(hits) == expected, text
    found = anywhere.find(["two bobcats"])
    assert found is not None
    assert found.found == "bobcats"  # the whole word is what the member is told


def test_an_allowed_term_takes_its_text_out_of_a_match() -> None:
    terms = TermList(["*cat*", "裸"], ["category", "裸足"])
    assert terms.find(["a category of things"]) is None
    assert terms.find(["a cat"]) is not None
    assert terms.find(["裸足で歩く"]) is None
    found = terms.find(["裸足と裸"])
    assert found is not None
    assert found.term == "裸"


def test_a_phrase_matches_with_any_separator_between_its_words() -> None:
    terms = TermList(["blood bath"])
    for typed in ("a blood bath", "blood  bath", "BLOOD-bath", "blood.bath"):
        assert terms.find([typed]) is not None, typed
    assert terms.find(["a bloodbath"]) is None


def test_only_the_parts_that_steer_towards_something_are_checked() -> None:
    assert steering_parts("a red sky:1 | naked:-0.5 | fog") == ["a red sky", "fog"]
    rules = PromptRules(TermList(["naked"]), AutoModRules())
    where: dict[str, Any] = {
        "guild_id": 1,
        "channel_id": 2,
        "roles": (),
        "server_terms": (),
        "use_automod": True,
    }
    assert rules.check("a person | naked:-1", **where) is None
    refused = rules.check("a naked person | blurry:-1", **where)
    assert refused is not None
    assert (refused.found, refused.source) == ("naked", Source.OPERATOR)
    assert rules.check("", **where) is None


def test_the_operators_server_and_automod_rules_each_refuse_saying_whose() -> None:
    automod = AutoModRules()
    automod.replace(1, [KeywordRule(7, keywords=("spider*",), patterns=(r"\bbl[o0]+d\b",))])
    rules = PromptRules(TermList(["naked"], ["skinny"]), automod)

    def check(prompt: str, guild: int = 1, **changes: object) -> tuple[str, Source] | None:
        where: dict[str, Any] = {
            "guild_id": guild,
            "channel_id": 2,
            "roles": (),
            "server_terms": ("clown",),
            "use_automod": True,
            **changes,
        }
        refused = rules.check(prompt, **where)
        return (refused.found, refused.source) if refused is not None else None

    assert check("naked") == ("naked", Source.OPERATOR)
    assert check("a sad clown") == ("clown", Source.SERVER)
    assert check("spiders everywhere") == ("spiders", Source.AUTOMOD)
    assert check("a pool of BL00D") == ("BL00D", Source.AUTOMOD)  # the pattern, on the text typed
    assert check("spiders", guild=2) is None  # another server's rules
    assert check("spiders", use_automod=False) is None  # the admin turned AutoMod off for it
    assert check("a skinny clown") == ("clown", Source.SERVER)
    assert check("a field of flowers") is None


def test_an_automod_rule_exempts_its_roles_and_channels_and_a_bad_pattern_is_skipped() -> None:
    rule = KeywordRule(
        3,
        keywords=("spider",),
        patterns=("[unclosed",),
        exempt_roles=frozenset({10}),
        exempt_channels=frozenset({20}),
    )
    assert rule.applies(2, ())
    assert not rule.applies(2, (10, 11))
    assert not rule.applies(20, ())
    assert rule.find(["a spider"]) == "spider"
    assert rule.find(["a bee"]) is None


def test_rules_kept_current_replace_put_and_drop() -> None:
    automod = AutoModRules()
    automod.replace(1, [KeywordRule(1, keywords=("a",)), KeywordRule(2, keywords=("b",))])
    automod.put(1, KeywordRule(2, keywords=("c",)))
    automod.drop(1, 1)
    automod.drop(1, 99)
    assert [(r.id, r.keywords) for r in automod.of(1)] == [(2, ("c",))]
    assert automod.of(5) == []
