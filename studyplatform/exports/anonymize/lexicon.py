"""The word lists shipped in `data/`, loaded once into folded sets.

- first_names.txt / surnames.txt: common given names and surnames (US and Brazil).
- common_words.txt: words capitalised in chat for reasons other than being a name.
- not_names.txt: models, brands, medicines, places, months… never taken as a name.

Every entry is stored folded (lower case, no accents) so a lookup is one `fold()` and one set
membership test, whatever the case or accents the participant typed.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from .folding import fold

_DATA_DIR = Path(__file__).resolve().parent / "data"


def _read_words(filename: str) -> frozenset[str]:
    words: set[str] = set()
    for line in (_DATA_DIR / filename).read_text(encoding="utf-8").splitlines():
        content = line.split("#", 1)[0]
        words.update(fold(word) for word in content.split())
    return frozenset(words)


class Lexicon:
    """Folded word sets with the derived `ambiguous` set (a name that is also a common word)."""

    def __init__(self) -> None:
        self.first_names = _read_words("first_names.txt")
        self.surnames = _read_words("surnames.txt")
        self.common_words = _read_words("common_words.txt")
        self.not_names = _read_words("not_names.txt")
        self.names = self.first_names | self.surnames
        # "Will", "May", "Costa", "Young": need more evidence than capitalisation alone.
        self.ambiguous = self.names & self.common_words


@cache
def lexicon() -> Lexicon:
    """The shared, lazily loaded lexicon (files are read once per process)."""
    return Lexicon()
