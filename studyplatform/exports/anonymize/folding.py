"""Case- and accent-insensitive text helpers.

Participants type names without accents ("Jose Araujo" for "José Araújo"), in capitals or in
lower case; every comparison of names goes through `fold`. Matching inside a text uses
`accent_insensitive_pattern`, which expands each letter into a character class instead of
folding the text, so offsets into the original text never shift.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower-case `text` and strip diacritics: "JOSÉ Araújo" -> "jose araujo"."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()


def name_key(text: str) -> str:
    """A normalised key for a name: folded, with punctuation and spacing removed.

    "Ana-Clara", "ana clara" and "ANA CLARA!" share a key; used for surrogate consistency.
    """
    return "".join(ch for ch in fold(text) if ch.isalnum())


def _variants_by_base() -> dict[str, str]:
    # Precomposed Latin letters grouped by the ASCII letter they decompose to, limited to the
    # Latin-1 Supplement: that covers Portuguese, Spanish, French, German and Italian names,
    # and keeps the per-participant patterns small (each class costs compile time).
    variants: dict[str, set[str]] = {}
    for code in range(0x00C0, 0x0100):
        char = chr(code)
        base = unicodedata.normalize("NFD", char)[0].lower()
        if base.isascii() and base.isalpha() and base != char.lower():
            variants.setdefault(base, {base}).add(char.lower())
    return {base: "".join(sorted(chars)) for base, chars in variants.items()}


_VARIANTS = _variants_by_base()


def accent_insensitive_pieces(value: str) -> list[str]:
    """Regex pieces, one per character of `value`, matching it in *lower-cased* text with any
    accents: "José" -> ["j", "[oòóôõöø…]", "s", "[eèéêë…]"].

    Whitespace matches any run of whitespace; other punctuation must match exactly (escaped),
    so "jose.araujo" does not also match "jose-araujo".
    """
    pieces: list[str] = []
    for char in fold(value):
        if char.isspace():
            if not pieces or pieces[-1] != r"\s+":
                pieces.append(r"\s+")
        elif char in _VARIANTS:
            pieces.append("[" + _VARIANTS[char] + "]")
        else:
            pieces.append(re.escape(char))
    return pieces


def accent_insensitive_pattern(value: str) -> str:
    """A regex source matching `value` in lower-cased text with any accents."""
    return "".join(accent_insensitive_pieces(value))


def trie_pattern(words: list[str] | tuple[str, ...] | set[str]) -> str:
    """A regex source matching any of `words`, factored into a trie: "(?:a(?:b|c)|d)".

    A flat alternation makes the `re` engine try every word at every position; the trie form
    tries only the words sharing the characters read so far, and, opening with literals, still
    lets the engine skip ahead to possible first characters. Longer words win at a position.
    """
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict) -> str:
        branches = []
        ends_here = "" in node
        for char in sorted(key for key in node if key):
            branches.append(re.escape(char) + emit(node[char]))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # Optional tail: the longer word is tried first, then the word ending here.
        return f"(?:{body})?" if ends_here else body

    return emit(trie)
