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
    return resolved, {span: known_keys[span] for span in resolved if span in known_keys}


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
    for text in texts:
        starts.append(position)
        position += len(text) + len(BOUNDARY)
    # A NUL inside a message would be taken for a boundary: replace it (same length).
    joined = BOUNDARY.join(text.replace("\x00", " ") for text in texts)
    spans, keys = _detect(joined, known)
    results: list[tuple[list[Span], dict[Span, str]]] = [([], {}) for _ in texts]
    index = 0
    for span in spans:  # sorted by start
        while index + 1 < len(starts) and span.start >= starts[index + 1]:
            index += 1
        offset = starts[index]
        if span.end > offset + len(texts[index]):
            continue  # cannot happen (nothing matches NUL), but never return a crossing span
        local = Span(span.start - offset, span.end - offset, span.type, span.detector)
        results[index][0].append(local)
        if span in keys:
            results[index][1][local] = keys[span]
    return results
