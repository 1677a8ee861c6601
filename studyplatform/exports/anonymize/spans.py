"""Detected spans and the rule that decides between overlapping detections.

Every detector reports `Span`s with character offsets into the text it was given. Several
detectors can claim the same characters (an e-mail's domain is also a bare domain; a street
called "Rua Maria Antônia" contains a first name), so `resolve_overlaps` keeps one
deterministic, non-overlapping set.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

PERSON = "PERSON"
EMAIL = "EMAIL"
PHONE = "PHONE"
URL = "URL"
IP = "IP"
CREDIT_CARD = "CREDIT_CARD"
SSN = "SSN"
CPF = "CPF"
IBAN = "IBAN"
ADDRESS = "ADDRESS"
POSTAL_CODE = "POSTAL_CODE"
DATE_OF_BIRTH = "DATE_OF_BIRTH"
HANDLE = "HANDLE"

ENTITY_TYPES: tuple[str, ...] = (
    PERSON,
    EMAIL,
    PHONE,
    URL,
    IP,
    CREDIT_CARD,
    SSN,
    CPF,
    IBAN,
    ADDRESS,
    POSTAL_CODE,
    DATE_OF_BIRTH,
    HANDLE,
)

# Higher wins an overlap before length is considered. Checksum-validated numbers are the least
# likely to be wrong, so they beat the looser digit patterns (a CPF is also 11 digits a phone
# pattern could take); anything structured beats a name, because a name found inside an
# e-mail, URL or street name is better replaced together with its container.
PRIORITY: dict[str, int] = {
    CREDIT_CARD: 6,
    IBAN: 6,
    CPF: 6,
    SSN: 6,
    EMAIL: 5,
    URL: 4,
    IP: 4,
    DATE_OF_BIRTH: 3,
    PHONE: 3,
    ADDRESS: 2,
    POSTAL_CODE: 2,
    HANDLE: 2,
    PERSON: 1,
}

# Final tie-break so the outcome never depends on detector order.
_TYPE_ORDER = {name: index for index, name in enumerate(ENTITY_TYPES)}


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """One detected identifier: text[start:end] is of `type`, found by `detector`."""

    start: int
    end: int
    type: str
    detector: str

    def __init__(self, start: int, end: int, type: str, detector: str) -> None:
        # What the generated `__init__` does (a frozen dataclass sets its fields through
        # `object.__setattr__`), with the slot descriptors called directly: detection creates
        # a Span per candidate, so this is measurably faster.
        _set_start(self, start)
        _set_end(self, end)
        _set_type(self, type)
        _set_detector(self, detector)

    def __len__(self) -> int:
        return self.end - self.start

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


_set_start = Span.start.__set__  # type: ignore[attr-defined]
_set_end = Span.end.__set__  # type: ignore[attr-defined]
_set_type = Span.type.__set__  # type: ignore[attr-defined]
_set_detector = Span.detector.__set__  # type: ignore[attr-defined]


def _rank(span: Span) -> tuple[int, int, int, int, str]:
    return (
        -PRIORITY[span.type],
        -(span.end - span.start),
        span.start,
        _TYPE_ORDER[span.type],
        span.detector,
    )


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Keep a non-overlapping subset: higher priority, then longer, then earlier wins.

    Greedy over the ranked candidates; the kept spans are held sorted by start, so checking a
    candidate against its two neighbours (bisect) is enough. A duplicate needs no removal: it
    ranks right after its twin and is rejected as overlapping it (or as its twin was).
    """
    starts: list[int] = []
    kept: list[Span] = []
    for span in sorted(spans, key=_rank):
        if span.end <= span.start:
            continue
        index = bisect_left(starts, span.start)
        if index < len(kept) and kept[index].start < span.end:
            continue  # overlaps the next kept span
        if index > 0 and kept[index - 1].end > span.start:
            continue  # overlaps the previous kept span
        starts.insert(index, span.start)
        kept.insert(index, span)
    return kept
