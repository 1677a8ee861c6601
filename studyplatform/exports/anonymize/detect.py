"""Run every detector over a text and keep one non-overlapping set of spans."""

from __future__ import annotations

from . import names, structured
from .known import KnownIdentifiers, detect_known
from .scan import scan
from .spans import Span, resolve_overlaps


def detect_with_keys(
    text: str, known: KnownIdentifiers | None = None
) -> tuple[list[Span], dict[Span, str]]:
    """Resolved spans plus, for spans of known identifiers, their surrogate keys."""
    # NUL marks message boundaries inside a batch (see BOUNDARY); in a text of its own it is
    # just a space (same length, so offsets are unchanged).
    return _detect(text.replace("\x00", " "), known)


def _detect(text: str, known: KnownIdentifiers | None) -> tuple[list[Span], dict[Span, str]]:
    scanned = scan(text)
    lower = scanned.lower
    candidates: list[Span] = []
    # Each detector is skipped when the text cannot contain what it looks for: most chat
    # messages have no "@", and many have no number long enough for a card or a phone.
    if "@" in text or " at " in lower or "arroba" in lower or "[at]" in lower or "(at)" in lower:
        candidates += structured.detect_emails(scanned)
        candidates += structured.detect_handles(scanned)
    if "." in text:
        candidates += structured.detect_urls(scanned)
    digits = scanned.max_digits
    if digits >= 4 or "::" in text:
        candidates += structured.detect_ips(scanned)
    if digits >= 7:
        candidates += structured.detect_phones(scanned)
        if digits >= 9:
            candidates += structured.detect_ssns(scanned)
        if digits >= 10:
            candidates += structured.detect_ibans(scanned)
        if digits >= 11:
            candidates += structured.detect_cpfs(scanned)
        if digits >= 13:
            candidates += structured.detect_credit_cards(scanned)
    if digits:
        candidates += structured.detect_dates_of_birth(scanned)
        addresses = structured.detect_addresses(scanned)
        candidates += addresses
        candidates += structured.detect_postal_codes(scanned, addresses)
    candidates += names.detect_cued_names(text, lower)
    candidates += names.detect_listed_names(text)
    known_keys: dict[Span, str] = {}
    if known:
        for span, key in detect_known(text, known, lower):
            candidates.append(span)
            known_keys[span] = key
    resolved = resolve_overlaps(candidates)
    if not known_keys:
        return resolved, {}
    # Only `detect_known` reports the detector "known", and it reports every such span.
    return resolved, {span: known_keys[span] for span in resolved if span.detector == "known"}


def detect(text: str, known: KnownIdentifiers | None = None) -> list[Span]:
    """All identifiers in `text`, as non-overlapping spans sorted by position.

    Offsets are Python string indices (Unicode code points) into `text`.
    """
    return detect_with_keys(text, known)[0]


# Joins the messages of a batch. No detector pattern matches NUL, so no span can cross it, and
# context windows stop at it (`structured.window_start`); the newline makes every message
# start a line, as it does on its own (greetings, sentence starts).
BOUNDARY = "\x00\n"


def detect_many_with_keys(
    texts: list[str], known: KnownIdentifiers | None = None
) -> list[tuple[list[Span], dict[Span, str]]]:
    """`detect_with_keys` for many texts of one participant, in one pass.

    Joining the texts amortises the fixed cost of a detector call over the whole batch, which
    is most of the cost for short chat messages. Results match per-text detection; offsets
    are relative to each text.
    """
    starts: list[int] = []
    position = 0
    step = len(BOUNDARY)
    for text in texts:
        starts.append(position)
        position += len(text) + step
    joined = BOUNDARY.join(texts)
    if joined.count("\x00") != len(texts) - 1:
        # A NUL inside a message would be taken for a boundary: replace it (same length).
        joined = BOUNDARY.join([text.replace("\x00", " ") for text in texts])
    spans, keys = _detect(joined, known)
    results: list[tuple[list[Span], dict[Span, str]]] = [([], {}) for _ in texts]
    index = 0
    last = len(starts) - 1
    next_start = starts[1] if last > 0 else -1
    offset = 0
    for span in spans:  # sorted by start
        start = span.start
        if index < last and start >= next_start:
            while index < last and start >= starts[index + 1]:
                index += 1
            offset = starts[index]
            next_start = starts[index + 1] if index < last else -1
        if span.end > offset + len(texts[index]):
            continue  # cannot happen (nothing matches NUL), but never return a crossing span
        local = (
            Span(start - offset, span.end - offset, span.type, span.detector) if offset else span
        )
        results[index][0].append(local)
        if keys and span.detector == "known":
            key = keys.get(span)
            if key is not None:
                results[index][1][local] = key
    return results
