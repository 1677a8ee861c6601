"""Behaviour of the detector beyond the phrase table: spans, normalisation, ranking, lexicon."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studyplatform.safety.detector import Detection, Detector, LexiconError, detect, normalize
from studyplatform.safety.detector import detector as detector_module
from studyplatform.safety.detector.detector import LEXICON_DIR, LEXICON_FILES, load_rules
from tests.safety.detector.test_detector_table import NEGATIVES, POSITIVES

# --- spans map back to the original text ---------------------------------------------------


def test_span_points_at_the_original_accented_mixed_case_text():
    # given: accents, capitals, doubled spaces and a prefix before the phrase
    text = "Oi.   Hoje eu  NÃO   QUERO mais   VIVER, sério"
    # when
    found = detect(text, "pt-br")
    # then: the span covers exactly the original characters
    assert found is not None
    assert text[found.start : found.end] == "NÃO   QUERO mais   VIVER"
    assert found.matched_text == text[found.start : found.end]
    assert found.language == "pt-br"


def test_span_survives_curly_apostrophes_and_emoji():
    text = "😞😞 honestly I don’t want to live anymore…"
    found = detect(text, "en")
    assert found is not None
    assert text[found.start : found.end] == "don’t want to live anymore"
    assert found.language == "en"


def test_span_with_characters_that_expand_on_casefold():
    # "ß" casefolds to "ss": two normalised characters map back to one original character
    text = "Straße. Ich weiß nicht. I want to KILL MYSELF"
    found = detect(text)
    assert found is not None
    assert text[found.start : found.end] == "I want to KILL MYSELF"


def test_normalize_keeps_an_index_for_every_character():
    norm, index = normalize("Tô  cansada, NÃO aguento!")
    assert norm == "to cansada , nao aguento !"
    assert len(norm) == len(index)
    assert index[0] == 0
    assert index[norm.index("nao")] == "Tô  cansada, NÃO aguento!".index("NÃO")


def test_it_reports_the_language_of_the_matching_lexicon():
    assert detect("quero me matar").language == "pt-br"
    assert detect("I want to kill myself").language == "en"
    # an English phrase screened only against the Portuguese lexicon is not found
    assert detect("I want to kill myself", "pt-br") is None


# --- ranking, negation window, context ------------------------------------------------------


def test_it_returns_the_most_severe_hit_when_several_match():
    # given: a passive wish early and an explicit plan later in the same message
    text = "Sometimes I wish I wasn't here. Tonight I'm going to take all of my pills."
    # when
    found = detect(text, "en")
    # then: the plan wins although it comes second
    assert (found.severity, found.category) == ("high", "plan_or_means")
    assert text[found.start : found.end].endswith("take all of my pills")
    # and detect_all still sees both
    severities = [d.severity for d in Detector().detect_all(text, "en")]
    assert severities == ["medium", "high"]


def test_negation_only_reaches_a_few_tokens_back():
    # "not" is far before the phrase and in another clause: still a hit
    assert detect("I'm not okay at all, I want to kill myself", "en").severity == "high"
    assert detect("I did not sleep and I want to kill myself", "en").severity == "high"
    # right before the phrase: negated
    assert detect("I do not want to kill myself", "en") is None


def test_a_later_sentence_is_not_negated_by_an_earlier_one():
    found = detect("Não. Quero me matar.", "pt-br")
    assert found is not None
    assert found.severity == "high"


def test_a_resolved_history_is_low_but_a_new_disclosure_in_the_same_message_is_high():
    text = "I used to think about suicide years ago. Now I'm thinking about suicide again."
    found = detect(text, "en")
    assert (found.severity, found.category) == ("high", "suicidal_ideation")
    assert found.start == text.index("thinking about suicide")


def test_a_third_party_subject_downgrades_a_subjectless_phrase():
    found = detect("my sister has been self harming", "en")
    assert (found.severity, found.category) == ("low", "third_party")


def test_first_person_talk_about_a_film_is_still_flagged():
    # fiction cues only drop hits that are not about the writer
    found = detect("That movie made me feel suicidal", "en")
    assert found is not None
    assert found.severity == "high"


def test_unknown_language_is_rejected():
    with pytest.raises(ValueError, match="unsupported language"):
        detect("hello", "fr")


def test_language_aliases_are_accepted():
    assert detect("quero me matar", "pt").language == "pt-br"
    assert detect("quero me matar", "PT-BR").language == "pt-br"


def test_empty_and_whitespace_messages_are_not_flagged():
    assert detect("") is None
    assert detect("   \n\t ") is None
    assert detect("?!...") is None


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError):
        detect(None)  # type: ignore[arg-type]


# --- the detector object and its cache ------------------------------------------------------


def test_detector_loads_each_lexicon_once():
    # given: the module-level cache
    first = Detector()
    second = Detector(["en", "pt-br"])
    # then: both share the compiled rules
    assert first._rules["en"] is second._rules["en"]
    assert first._rules["pt-br"] is second._rules["pt-br"]


def test_a_detector_restricted_to_one_language_refuses_the_other():
    english = Detector(["en"])
    assert english.detect("I want to die").severity == "medium"
    assert english.detect("quero morrer") is None
    with pytest.raises(ValueError, match="not loaded"):
        english.detect("quero morrer", "pt-br")


def test_detection_is_a_frozen_value():
    found = detect("kms")
    assert isinstance(found, Detection)
    with pytest.raises(AttributeError):
        found.severity = "low"  # type: ignore[misc]


# --- the lexicon files ------------------------------------------------------------------------


@pytest.mark.parametrize("language", list(LEXICON_FILES))
def test_each_lexicon_has_several_dozen_patterns(language):
    rules = load_rules(language)
    flagging = [e for e in rules.entries if e.severity is not None]
    assert len(flagging) >= 30
    # every alternative counts as a pattern a reviewer would recognise
    alternatives = sum(e.regex.pattern.count("|") + 1 for e in flagging)
    assert alternatives >= 100


@pytest.mark.parametrize("filename", list(LEXICON_FILES.values()))
def test_lexicon_patterns_use_only_bounded_repetition(filename):
    # Catastrophic backtracking needs an unbounded quantifier (* or +) nested or chained over
    # overlapping text. Lexicon patterns may only use ?, alternation and small {m,n} repeats,
    # so every match attempt is bounded and screening is linear in the message length.
    data = json.loads((LEXICON_DIR / filename).read_text(encoding="utf-8"))
    sources = [e["pattern"] for e in data["entries"]] + list(data["macros"].values())
    for source in sources:
        stripped = re.sub(r"\\.", "", source)  # escaped characters are literals
        assert "*" not in stripped, source
        assert "+" not in stripped, source
        for high in re.findall(r"\{\d+,(\d*)\}", stripped):
            assert high and int(high) <= 6, source


def test_a_long_message_with_many_near_misses_is_screened_correctly():
    # given: ~2,000 characters of text that repeatedly almost matches (prefixes of patterns)
    # (regexes are linear, see the test above: this checks correctness, not speed)
    filler = "i want to i am going to i wish i was not quero me nao quero mais " * 40
    text = filler[:2000] + ". I want to kill myself"
    assert len(text) >= 2000
    # when
    found = detect(text)
    # then
    assert found is not None
    assert found.severity == "high"
    assert text[found.start : found.end] == "I want to kill myself"


def test_a_malformed_lexicon_is_rejected_at_load_time(tmp_path: Path):
    bad = tmp_path / "lexicon.json"
    bad.write_text(
        json.dumps(
            {"entries": [{"id": "x", "pattern": "{nope}", "severity": "high", "category": "c"}]}
        ),
        encoding="utf-8",
    )
    with pytest.raises(LexiconError, match="unknown macro"):
        load_rules("en", bad)
    bad.write_text(
        json.dumps(
            {"entries": [{"id": "x", "pattern": "a", "severity": "urgent", "category": "c"}]}
        ),
        encoding="utf-8",
    )
    with pytest.raises(LexiconError, match="severity"):
        load_rules("en", bad)
    # Each entry compiles alone, but not side by side in the combined screen.
    entries = [
        {"id": f"e{i}", "pattern": "(?P<w>want) to die", "severity": "high", "category": "c"}
        for i in (1, 2)
    ]
    bad.write_text(json.dumps({"entries": entries}), encoding="utf-8")
    with pytest.raises(LexiconError, match="do not combine"):
        load_rules("en", bad)


def test_the_module_imports_no_django_and_no_third_party_package():
    source = Path(detector_module.__file__).read_text(encoding="utf-8")
    imported = set(re.findall(r"^(?:from|import) ([a-z_]+)", source, flags=re.MULTILINE))
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


# --- property: a phrase embedded anywhere is found with the right span ----------------------

_PREFIX = st.text(alphabet="abcdefghij 0123456789\n\t-()", max_size=200)


@settings(max_examples=60, deadline=None)
@given(prefix=_PREFIX, suffix=_PREFIX)
def test_an_embedded_phrase_is_found_at_its_original_position(prefix, suffix):
    phrase = "NÃO quero mais viver"
    text = prefix + ". Eu " + phrase + ". " + suffix
    found = detect(text, "pt-br")
    assert found is not None
    assert found.severity == "medium"
    assert text[found.start : found.end] == phrase


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_yields_none_or_a_span_inside_the_text(text):
    found = detect(text)
    if found is not None:
        assert 0 <= found.start < found.end <= len(text)
        assert found.matched_text == text[found.start : found.end]


# --- the combined screen: a quiet message skips the entry-by-entry scan, same answers ------


def _scanning_every_entry() -> Detector:
    """A detector whose screen always matches: every entry is tried, as before the screen."""
    full = Detector()
    always = re.compile("")
    full._rules = {lang: dataclasses.replace(r, screen=always) for lang, r in full._rules.items()}
    return full


_FULL = _scanning_every_entry()
_TABLE_TEXTS = [row[0] for row in POSITIVES] + [row[0] for row in NEGATIVES]
_WORDS = sorted({w for text in _TABLE_TEXTS for w in text.split()})


@pytest.mark.parametrize("text", _TABLE_TEXTS)
def test_the_screen_gives_the_answers_of_the_full_scan_on_the_phrase_table(text):
    assert Detector().detect_all(text) == _FULL.detect_all(text)


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(st.sampled_from(_WORDS), max_size=14),
    joiners=st.lists(st.sampled_from([" ", " ", ", ", ". ", " não ", " not "]), max_size=14),
)
def test_the_screen_gives_the_answers_of_the_full_scan_on_mixed_phrases(words, joiners):
    text = "".join(w + j for w, j in zip(words, joiners + [" "] * len(words), strict=False))
    assert Detector().detect_all(text) == _FULL.detect_all(text)


def test_the_screen_leaves_out_exclusions_and_covers_every_flagging_entry():
    for rules in Detector()._rules.values():
        flagging = [e for e in rules.entries if e.severity is not None]
        assert rules.screen is not None
        assert rules.screen.pattern == "|".join(f"(?:{e.regex.pattern})" for e in flagging)
        assert len(flagging) < len(rules.entries)  # the lexicons do have exclusions
