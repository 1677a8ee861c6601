"""Text markers: first-person and affect rates, relationship phrases, both languages."""

from __future__ import annotations

import unicodedata

import pandas as pd
import pytest
from helpers_features import day, messages, participants
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.features import MARKER_COLUMNS, daily_features, message_markers
from analysis.features.lexicons import expand_alternatives, load_lexicon, tokenize


def _one(text: str, language: str) -> dict:
    return message_markers(pd.Series([text]), language).iloc[0].to_dict()


def test_first_person_singular_in_english_includes_contractions():
    got = _one("I think my dog likes me, and I’m sure of it myself.", "en")
    # i think my dog likes me and i'm sure of it myself: 12 tokens, 5 first-person
    assert (got["tokens"], got["first_person"]) == (12, 5)


def test_first_person_singular_in_portuguese():
    got = _one("Eu acho que ela gosta de mim, e o meu cachorro vem comigo.", "pt-br")
    assert (got["tokens"], got["first_person"]) == (13, 4)


def test_hyphenated_portuguese_clitic_counts_as_a_word():
    assert _one("Ajude-me, por favor", "pt-br")["first_person"] == 1


def test_a_portuguese_pronoun_is_not_first_person_for_an_english_speaker():
    assert _one("eu te amo", "en")["first_person"] == 0
    assert _one("eu te amo", "en")["relationship_phrases"] == 0


def test_affect_words_in_english_are_whole_words_case_insensitive():
    got = _one("I'm so HAPPY and grateful, but a bit anxious", "en")
    assert (got["affect_positive"], got["affect_negative"]) == (2, 1)
    # "mad" and "sad" must not match inside other words
    assert _one("The madness of nomad life, a saddle", "en")["affect_negative"] == 0


def test_portuguese_affect_matches_with_and_without_accents():
    accented = _one("Estou tão feliz, você é ótima, sem ansiedade", "pt-br")
    plain = _one("estou tao feliz, voce e otima, sem ansiedade", "pt-br")
    decomposed = _one(
        unicodedata.normalize("NFD", "Estou tão feliz, você é ótima, sem ansiedade"), "pt-br"
    )
    assert (accented["affect_positive"], accented["affect_negative"]) == (2, 1)
    assert plain == accented == decomposed


def test_but_is_not_counted_as_bad_in_portuguese():
    # "más" (bad, plural) folds to "mas" (but); the list leaves it out so "mas" stays neutral
    assert _one("Eu queria ir mas não deu", "pt-br")["affect_negative"] == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I love you so much, you're my best friend!", 2),
        ("i love you", 1),
        ("youre my best friend", 1),
        ("You understand me better than anyone.", 1),
        ("I missed you. I miss you", 2),
        ("I love your idea", 0),
        ("I'd love you to summarise this", 0),
    ],
)
def test_relationship_phrases_in_english(text, expected):
    assert _one(text, "en")["relationship_phrases"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Eu te amo", 1),
        ("te amo!!", 1),
        ("Só você me entende", 1),
        ("so vc me entende", 1),
        ("Senti sua falta!", 1),
        ("você é meu melhor amigo", 1),
        ("voce e minha melhor amiga. Te amo", 2),
        ("Eu te amo\nmuito", 1),
        ("Você me entregou o texto", 0),
    ],
)
def test_relationship_phrases_in_portuguese(text, expected):
    assert _one(text, "pt-br")["relationship_phrases"] == expected


def test_a_phrase_never_spans_two_messages():
    got = message_markers(pd.Series(["and I love", "you"]), "en")
    assert got["relationship_phrases"].tolist() == [0, 0]


def test_missing_text_and_empty_input_give_zero_and_empty():
    got = message_markers(pd.Series([None, "", "!!!"]), "en")
    assert got.to_numpy().sum() == 0
    empty = message_markers(pd.Series([], dtype=object), "en")
    assert empty.empty and list(empty.columns) == list(MARKER_COLUMNS)


def test_unsupported_language_is_an_error():
    with pytest.raises(ValueError, match="no lexicon for language 'de'"):
        message_markers(pd.Series(["hallo"]), "de")


def test_daily_rates_use_only_the_participants_own_messages():
    msgs = messages(
        [
            ("p1", "c", "user", "2024-01-15 10:00", "I am happy"),
            ("p1", "c", "assistant", "2024-01-15 10:00:05", "I am sad and I am lonely", 300.0),
            ("p1", "c", "user", "2024-01-15 10:01", "you're my best friend"),
            ("p1", "c", "user", "2024-01-15 10:02", None),
            ("p2", "c2", "user", "2024-01-15 10:00", "Estou triste, eu te amo"),
        ]
    )
    people = participants(("p1", "UTC", "en"), ("p2", "America/Sao_Paulo", "pt-br"))
    daily = daily_features(msgs, people)
    p1 = day(daily, "p1", "2024-01-15")
    # tokens: i am happy (3) + you're my best friend (4) = 7
    assert (p1["text_messages"], p1["tokens"], p1["first_person"]) == (2, 7, 2)
    assert p1["first_person_rate"] == pytest.approx(2 / 7)
    assert p1["positive_affect_rate"] == pytest.approx(2 / 7)  # happy, best
    assert p1["negative_affect_rate"] == 0.0
    assert p1["relationship_message_share"] == pytest.approx(0.5)
    p2 = day(daily, "p2", "2024-01-15")
    # estou triste eu te amo: 5 tokens, eu = first person, triste negative, amo positive
    assert (p2["tokens"], p2["first_person"], p2["affect_negative"]) == (5, 1, 1)
    assert (p2["affect_positive"], p2["relationship_phrases"]) == (1, 1)


def test_shipped_lexicons_are_substantial_and_disjoint():
    for lang in ("en", "pt"):
        lex = load_lexicon(lang)
        assert len(lex.positive) >= 200 and len(lex.negative) >= 200
        assert not lex.positive & lex.negative
        assert len(lex.phrases) >= 50


def test_phrase_alternatives_expand_to_every_combination():
    assert expand_alternatives("(eu|) te amo") == ["eu te amo", "te amo"]
    assert expand_alternatives("sozinh(o|a)") == ["sozinho", "sozinha"]


def test_unicode_punctuation_and_emoji_separate_words():
    got = _one("sad…happy 😊 “great” — ok", "en")
    assert (got["tokens"], got["affect_positive"], got["affect_negative"]) == (4, 2, 1)


_ALPHABET = "abcdeiouyáéíóúãõçêâ'’ .,!?-…😊\n\tIÉ0-9_"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=_ALPHABET, max_size=40), max_size=8))
def test_vectorised_token_counts_match_the_python_tokenizer(texts):
    # given: arbitrary short messages mixing accents, apostrophes, punctuation, emoji
    # when: counted by the vectorised pipeline
    got = message_markers(pd.Series(texts, dtype=object), "pt-br")
    # then: the same number of tokens and first-person words as the reference tokenizer
    lex = load_lexicon("pt")
    expected_tokens = [len(tokenize(t)) for t in texts]
    expected_fp = [sum(tok in lex.first_person for tok in tokenize(t)) for t in texts]
    assert got["tokens"].tolist() == expected_tokens
    assert got["first_person"].tolist() == expected_fp
