"""One cheap pass over a text that the detectors share.

Most messages contain few numbers, and most identifiers (phones, cards, CPFs, postal codes,
house numbers) are built from them. `Scan` finds the number-like runs once; the digit-based
detectors then only look at small windows around runs that have the right number of digits,
instead of each scanning the whole text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A run of digits with the separators identifiers use: "+55 (11) 98765-4321", "4111 1111 …",
# "529.982.247-25", "01310-100". It opens with a character class so the regex engine skips
# ordinary text quickly.
_NUMBERISH = re.compile(r"[\d(+](?:[\d \t\-.()/+]*[\d)])?")
_SEPARATORS = str.maketrans("", "", " \t-.()/+")


@dataclass(slots=True)
class Scan:
    """A text, its offset-aligned lower-case copy and its number-like runs."""

    text: str
    lower: str
    # (start, end, digit count) for each run that contains a digit; trailing separators cut.
    numbers: list[tuple[int, int, int]] = field(default_factory=list)
    max_digits: int = 0
    _selected: dict[tuple[int, int], list[tuple[int, int, int]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def numbers_with(self, low: int, high: int = 10_000) -> list[tuple[int, int, int]]:
        """Runs with between `low` and `high` digits (a new list each call)."""
        selected = self._selected.get((low, high))
        if selected is None:
            selected = [run for run in self.numbers if low <= run[2] <= high]
            self._selected[(low, high)] = selected
        return selected.copy()


def lower_aligned(text: str) -> str:
    """`text.lower()`, except characters whose lower case is longer ("İ") stay as they are,
    so offsets into the result are offsets into `text`."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)


def scan(text: str) -> Scan:
    """Prepare `text` for the detectors."""
    numbers: list[tuple[int, int, int]] = []
    append = numbers.append
    most = 0
    for match in _NUMBERISH.finditer(text):
        # The run holds only digits and the separators: its digits are what the deletion of
        # the separators leaves.
        digits = len(match.group().translate(_SEPARATORS))
        if digits:
            start, end = match.span()
            append((start, end, digits))
            if digits > most:
                most = digits
    return Scan(text, lower_aligned(text), numbers, most)


def as_scan(value: str | Scan) -> Scan:
    """Accept either a prepared `Scan` or a plain string (convenient in tests)."""
    return value if isinstance(value, Scan) else scan(value)
