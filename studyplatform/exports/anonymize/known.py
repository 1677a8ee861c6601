"""The participant's own identifiers (the "vault"): names, e-mail addresses and account ids.

The platform knows who wrote a message, so the strongest detector is simply to look for what
it already knows: the full name, each part of it ("José Araújo" -> "José", "Araújo"), each
e-mail address and its local part ("jose.araujo"), and ids such as a panel id or username.
Matching ignores case and accents ("jose araujo", "JOSÉ", "Araujo").

A part of a name that is also a common word ("Rosa", "Will", "Costa") only matches when
capitalised, so a participant called Rosa does not turn "camisa rosa" into a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from .folding import accent_insensitive_pieces, fold
from .lexicon import lexicon
from .scan import lower_aligned
from .spans import EMAIL, PERSON, Span

_NAME_PARTICLES = frozenset(
    {
        "da",
        "de",
        "do",
        "das",
        "dos",
        "di",
        "del",
        "van",
        "von",
        "der",
        "e",
        "y",
        "jr",
        "sr",
        "filho",
        "neto",
    }
)


@dataclass(frozen=True)
class KnownIdentifiers:
    """What the platform already knows about one participant.

    Tuples (not lists) so the value is hashable and its compiled matcher can be cached.
    """

    names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Accept any iterable of strings from callers; store cleaned tuples.
        for attribute in ("names", "emails", "ids"):
            values = getattr(self, attribute)
            if isinstance(values, str):
                values = (values,)
            cleaned = tuple(value.strip() for value in values if value and value.strip())
            object.__setattr__(self, attribute, cleaned)

    def __bool__(self) -> bool:
        return bool(self.names or self.emails or self.ids)


@dataclass(frozen=True)
class _Entry:
    type: str
    key: str  # the surrogate key: every part of one known name shares its full name's key
    needs_capital: bool = False


@dataclass
class KnownMatcher:
    """A compiled matcher for one participant's identifiers (runs on lower-cased text)."""

    pattern: re.Pattern[str] | None
    entries: dict[str, _Entry] = field(default_factory=dict)

    def find(self, text: str, lowered: str | None = None) -> list[tuple[Span, str]]:
        """Spans of known identifiers in `text`, each with its surrogate key."""
        if self.pattern is None:
            return []
        lower = lowered if lowered is not None else lower_aligned(text)
        length = len(text)
        found: list[tuple[Span, str]] = []
        for match in self.pattern.finditer(lower):
            start, end = match.span()
            # Whole words only: not inside another word, e-mail address, file name or id.
            if start > 0 and (lower[start - 1].isalnum() or lower[start - 1] in "_@.-"):
                continue
            if end < length and (
                lower[end].isalnum()
                or lower[end] in "_@"
                or (lower[end] in ".-" and end + 1 < length and lower[end + 1].isalnum())
            ):
                continue
            value = text[start:end]
            entry = self.entries.get(_lookup_key(value))
            if entry is None:
                continue
            if entry.needs_capital and not value[0].isupper():
                continue
            found.append((Span(start, end, entry.type, "known"), entry.key))
        return found


def _lookup_key(value: str) -> str:
    return " ".join(fold(value).split())


@lru_cache(maxsize=1024)
def compile_known(known: KnownIdentifiers) -> KnownMatcher:
    """Build (once per distinct identifier set) the alternation that finds them in a text."""
    entries: dict[str, _Entry] = {}
    common = lexicon().common_words

    def add(value: str, entry: _Entry) -> None:
        lookup = _lookup_key(value)
        # The first registration wins so a shared first name keeps a stable key.
        if len(lookup) >= 2 and lookup not in entries:
            entries[lookup] = entry

    for email in known.emails:
        # The same key `normalise_value` gives an e-mail found by the e-mail detector, so the
        # surrogate does not depend on which detector's span won.
        email_key = email.strip().casefold()
        add(email, _Entry(EMAIL, email_key))
    for name in known.names:
        name_key = "name:" + " ".join(fold(name).split())
        add(name, _Entry(PERSON, name_key))
        for part in re.split(r"[\s,]+", name):
            folded = fold(part).strip(".")
            if len(folded) < 2 or folded in _NAME_PARTICLES:
                continue
            add(part.strip("."), _Entry(PERSON, name_key, needs_capital=folded in common))
    for email in known.emails:
        local = email.split("@", 1)[0]
        if len(local) >= 3:
            add(local, _Entry(PERSON, "local:" + fold(local)))
    for identifier in known.ids:
        if len(identifier) >= 3:
            add(identifier, _Entry(PERSON, "id:" + fold(identifier)))

    if not entries:
        return KnownMatcher(None)
    return KnownMatcher(_first_character_dispatch(entries), entries)


def _first_character_dispatch(entries: dict[str, _Entry]) -> re.Pattern[str]:
    # Written as "[first characters](?:(?<=[a])rest-of-a|(?<=[j])rest-of-j…)" rather than a
    # plain alternation: a pattern that opens with one character class lets the regex engine
    # skip quickly to candidate positions, several times faster on long texts. Longest values
    # first, so a full name wins over its first part at the same position.
    # Values are grouped by their first character ("(?<=[j])(?:rest-of-jose-araujo|rest-of-
    # jose)"): one lookbehind per distinct first character is tried at a candidate position
    # instead of one per value. The first-character classes are disjoint (one per folded
    # character), so at most one group can match at a position and, within it, the values
    # keep their longest-first order: the matches are the same as with one branch per value.
    firsts: list[str] = []
    groups: dict[str, list[str]] = {}
    for value in sorted(entries, key=len, reverse=True):
        pieces = accent_insensitive_pieces(value)
        first, rest = pieces[0], "".join(pieces[1:])
        first_class = first if first.startswith("[") else "[" + first + "]"
        firsts.append(first_class[1:-1])
        groups.setdefault(first_class, []).append(rest)
    union = "".join(dict.fromkeys(firsts))
    branches = [f"(?<={first_class})(?:{'|'.join(rests)})" for first_class, rests in groups.items()]
    return re.compile(f"[{union}](?:{'|'.join(branches)})")


def detect_known(
    text: str, known: KnownIdentifiers | None, lowered: str | None = None
) -> list[tuple[Span, str]]:
    """Known identifiers in `text` with their surrogate keys (empty if nothing is known)."""
    if not known:
        return []
    return compile_known(known).find(text, lowered)
