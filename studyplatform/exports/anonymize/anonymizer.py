"""Replace detected identifiers with typed, consistent surrogates: "[PERSON_1]", "[EMAIL_2]".

One `Anonymizer` serves one participant. It remembers which surrogate each value received, so
the same value gets the same surrogate in every text of that participant ("Ana" is
"[PERSON_1]" in the first message and in the fortieth). Values are normalised before the
lookup: names ignore case, accents and punctuation; phones and other numbers keep only their
digits; e-mail addresses and URLs ignore case.

The map lives in memory only and is never written out: an export carries the surrogates, not
the values behind them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from .checksums import digits_of
from .detect import detect_many_with_keys, detect_with_keys
from .folding import name_key
from .known import KnownIdentifiers
from .spans import (
    CPF,
    CREDIT_CARD,
    EMAIL,
    HANDLE,
    IBAN,
    IP,
    PHONE,
    POSTAL_CODE,
    SSN,
    URL,
    Span,
)


@dataclass(frozen=True)
class Result:
    """An anonymized text, the spans replaced (offsets into the input) and their surrogates."""

    text: str
    spans: list[Span]
    surrogates: list[str] = field(default_factory=list)


def _result(text: str, spans: list[Span], surrogates: list[str]) -> Result:
    # `Result(text, spans, surrogates)` without the frozen dataclass's per-field
    # `object.__setattr__` calls (one result per message makes that cost visible).
    result = object.__new__(Result)
    fields = result.__dict__
    fields["text"] = text
    fields["spans"] = spans
    fields["surrogates"] = surrogates
    return result


def normalise_value(span_type: str, value: str) -> str:
    """The key under which a value is remembered: equal keys share a surrogate."""
    if span_type == PHONE:
        digits = digits_of(value)
        # "+55 11 98765 4321" and "(11) 98765-4321" are one number; so are "+1 415 555 0132"
        # and "(415) 555-0132". Drop the country code when the rest is a full national number.
        if digits.startswith("55") and len(digits) in (12, 13):
            digits = digits[2:]
        elif digits.startswith("1") and len(digits) == 11 and digits[1] in "23456789":
            digits = digits[1:]  # NANP area codes never start with 0 or 1
        return digits.lstrip("0")
    if span_type in (CPF, CREDIT_CARD, SSN):
        return digits_of(value)
    if span_type in (IBAN, POSTAL_CODE):
        return "".join(ch for ch in value.upper() if ch.isalnum())
    if span_type == EMAIL:
        return value.strip().casefold()
    if span_type == URL:
        lowered = value.casefold()
        for prefix in ("https://", "http://", "ftp://"):
            lowered = lowered.removeprefix(prefix)
        return lowered.removeprefix("www.").rstrip("/")
    if span_type in (HANDLE, IP):
        return value.casefold()
    return name_key(value)


# Chat texts repeat the same values (a participant's name, a phone number): normalise each once.
_normalised = lru_cache(maxsize=65536)(normalise_value)


class Anonymizer:
    """Anonymizes the texts of one participant with surrogates that stay consistent.

    >>> anonymizer = Anonymizer(known=KnownIdentifiers(names=("Ana Souza",)))
    >>> anonymizer.anonymize("Oi, sou a Ana Souza, meu zap é (11) 98765-4321").text
    'Oi, sou a [PERSON_1], meu zap é [PHONE_1]'
    """

    def __init__(self, known: KnownIdentifiers | None = None) -> None:
        self.known = known if known is not None else KnownIdentifiers()
        self._surrogates: dict[tuple[str, str], str] = {}
        self._counters: dict[str, int] = {}

    def surrogate_for(self, span_type: str, key: str) -> str:
        """The surrogate for a normalised value, allocating the next number on first sight."""
        entry = (span_type, key)
        surrogate = self._surrogates.get(entry)
        if surrogate is None:
            number = self._counters.get(span_type, 0) + 1
            self._counters[span_type] = number
            surrogate = f"[{span_type}_{number}]"
            self._surrogates[entry] = surrogate
        return surrogate

    def anonymize(self, text: str) -> Result:
        """Replace every detected identifier in `text`; spans refer to offsets in `text`."""
        spans, known_keys = detect_with_keys(text, self.known)
        return self._replace(text, spans, known_keys)

    def anonymize_many(self, texts: list[str]) -> list[Result]:
        """`anonymize` for many texts of this participant at once (same results, in order;
        several times faster for short chat messages, see `detect_many_with_keys`)."""
        detected = detect_many_with_keys(texts, self.known)
        return [
            self._replace(text, spans, keys)
            for text, (spans, keys) in zip(texts, detected, strict=True)
        ]

    def _replace(self, text: str, spans: list[Span], known_keys: dict[Span, str]) -> Result:
        if not spans:
            return _result(text, [], [])
        pieces: list[str] = []
        surrogates: list[str] = []
        position = 0
        known = self._surrogates
        for span in spans:
            start, end, span_type = span.start, span.end, span.type
            key = (known_keys.get(span) if known_keys else None) or _normalised(
                span_type, text[start:end]
            )
            surrogate = known.get((span_type, key)) or self.surrogate_for(span_type, key)
            surrogates.append(surrogate)
            pieces.append(text[position:start])
            pieces.append(surrogate)
            position = end
        pieces.append(text[position:])
        return _result("".join(pieces), spans, surrogates)


def anonymize(text: str, known: KnownIdentifiers | None = None) -> Result:
    """One-off anonymization of a single text (surrogates numbered from 1)."""
    return Anonymizer(known).anonymize(text)
