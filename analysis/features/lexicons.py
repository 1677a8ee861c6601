"""Loading the word lists and phrase lists shipped in ``analysis/lexicons/``.

The lists are plain text data files written for this project (see the header of each file for
provenance and licence). This module turns them into normalised token sets and tokenised
phrases, and holds the small fixed first-person pronoun lists. No Django imports.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "FIRST_PERSON",
    "LANGUAGES",
    "Lexicon",
    "expand_alternatives",
    "fold_accents",
    "language_key",
    "load_lexicon",
    "normalise_word",
    "tokenize",
]

LEXICON_DIR = Path(__file__).resolve().parent.parent / "lexicons"

# Index of a language in the per-language lookup tables; the order is part of no contract.
LANGUAGES: tuple[str, ...] = ("en", "pt")

# First-person singular forms. English contractions count because "I'm sad" is as first-person
# as "I am sad"; the apostrophe-less "im"/"ive" are how people type them on phones. "id" and
# "ill" are left out: they collide with the nouns/adjectives "id" and "ill".
FIRST_PERSON: dict[str, frozenset[str]] = {
    "en": frozenset(["i", "me", "my", "mine", "myself", "i'm", "i've", "i'd", "i'll", "im", "ive"]),
    "pt": frozenset(["eu", "me", "mim", "meu", "minha", "meus", "minhas", "comigo"]),
}

# A token: letters, combining marks, digits and inner apostrophes ("i'm", "d'água").
# Everything else (spaces, punctuation, emoji, hyphens) separates tokens, so the Portuguese
# clitic in "ajude-me" is its own token "me".
SEPARATOR_PATTERN = r"[^\p{L}\p{M}\p{N}']+"
# The same rule in Python's re (used for phrase lists and as the tests' reference): split on
# anything but word characters, combining accents and apostrophes, then trim apostrophes.
_PY_SEPARATOR = re.compile(r"[^\w\u0300-\u036f']+|_+")


def normalise_word(word: str) -> str:
    """NFC, lower case, typographic apostrophes made ASCII: the form text is compared in."""
    word = unicodedata.normalize("NFC", word).lower()
    return word.replace("\u2019", "'").replace("\u2018", "'")


def fold_accents(word: str) -> str:
    """Drop combining accents ("você" -> "voce") so unaccented phone typing still matches."""
    decomposed = unicodedata.normalize("NFD", word)
    return unicodedata.normalize(
        "NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    )


def tokenize(text: str) -> list[str]:
    """Tokenise one string the way the vectorised pipeline does (used for the phrase lists)."""
    pieces = (p.strip("'") for p in _PY_SEPARATOR.split(normalise_word(text)))
    return [p for p in pieces if p]


def language_key(language: str | None) -> str:
    """Map a participant language ("en", "en-GB", "pt-br", "pt_BR") to a lexicon key."""
    lang = (language or "").strip().lower()
    for key in LANGUAGES:
        if lang == key or lang.startswith(key + "-") or lang.startswith(key + "_"):
            return key
    raise ValueError(f"no lexicon for language {language!r}; supported: en, pt-br")


def expand_alternatives(pattern: str) -> list[str]:
    """Expand "(a|b) c(d|)" into every combination, whitespace collapsed."""
    parts = re.split(r"(\([^()]*\))", pattern)
    choices = [p[1:-1].split("|") if p.startswith("(") else [p] for p in parts]
    out = []
    for combo in itertools.product(*choices):
        phrase = " ".join("".join(combo).split())
        if phrase and phrase not in out:
            out.append(phrase)
    return out


@dataclass(frozen=True)
class Lexicon:
    """Everything needed to score one language's text."""

    language: str
    first_person: frozenset[str]
    positive: frozenset[str]
    negative: frozenset[str]
    phrases: tuple[tuple[str, ...], ...]

    @staticmethod
    def accepted_forms(word: str) -> frozenset[str]:
        """The token strings that count as ``word``: as written and without accents."""
        return frozenset({word, fold_accents(word)})


def _data_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _expand(words: set[str]) -> frozenset[str]:
    out: set[str] = set()
    for w in words:
        out |= Lexicon.accepted_forms(normalise_word(w))
    return frozenset(out)


@cache
def load_lexicon(language: str) -> Lexicon:
    """Load the shipped lists for ``language`` ("en" or "pt"), cached for the process."""
    key = language_key(language)
    affect: dict[str, set[str]] = {"positive": set(), "negative": set()}
    section = None
    for line in _data_lines(LEXICON_DIR / f"affect_{key}.txt"):
        if line.startswith("["):
            section = line.strip("[]").strip()
            if section not in affect:
                raise ValueError(f"affect_{key}.txt: unknown section {line!r}")
            continue
        if section is None:
            raise ValueError(f"affect_{key}.txt: word {line!r} before any section")
        affect[section].add(line)
    both = affect["positive"] & affect["negative"]
    if both:
        raise ValueError(f"affect_{key}.txt: words in both sections: {sorted(both)}")

    phrases: list[tuple[str, ...]] = []
    for line in _data_lines(LEXICON_DIR / f"relationship_{key}.txt"):
        for phrase in expand_alternatives(line):
            tokens = tuple(tokenize(phrase))
            if tokens and tokens not in phrases:
                phrases.append(tokens)
    return Lexicon(
        language=key,
        first_person=_expand(set(FIRST_PERSON[key])),
        positive=_expand(affect["positive"]),
        negative=_expand(affect["negative"]),
        phrases=tuple(phrases),
    )
