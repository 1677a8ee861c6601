"""Crisis-language detector: flags participant chat messages that may express suicide risk.

A screening aid for the safety reviewers, not a clinical instrument. It matches a lexicon of
English and Brazilian Portuguese crisis expressions (``lexicon_en.json``, ``lexicon_pt.json``,
shipped next to this module) against a normalised copy of the message and reports the most
severe hit with its span in the *original* text. See ``docs/safety_detector.md``.

Pipeline for one message:

1. Normalise: casefold, strip accents, drop apostrophes (``don't`` -> ``dont``), turn
   punctuation ``.,;:!?`` into separate tokens (clause boundaries), any other symbol into a
   space, collapse whitespace. Every normalised character remembers the index of the original
   character it came from, so spans map back exactly.
2. Match every lexicon entry (regular expressions over the normalised text, word-bounded).
3. Drop a hit when a negator (``not``, ``never``, ``não``, ``nunca``...) occurs in the few
   tokens before it within the same clause, unless a "breaker" (``know``, ``lie``, ``sei``...)
   sits between the negator and the hit ("I don't know why I want to die" is still a hit).
   Phrases whose negation is part of the meaning ("I don't want to live", "não aguento mais")
   carry it inside their own pattern.
4. Entries marked ``"person": "any"`` have no grammatical subject of their own: a third-party
   cue just before them (``my friend``, ``she``, ``ele``...) turns the hit into
   ``third_party``/``low``; in a fiction or informational sentence with no first-person word
   they are dropped.
5. Overlapping hits: the longest wins (a more specific phrase such as "I used to cut myself" or
   the figurative "me matar de rir" beats the shorter phrase inside it). Entries with a null
   severity are exclusions: they win overlaps and are then discarded.
6. The highest severity wins; ties go to the earliest hit.

Performance: every pattern uses only literals, alternations, ``?`` and small bounded repeats
(``{0,2}``), never ``*`` or ``+`` (a test enforces this), so each match attempt does a bounded
amount of work per starting position and a message costs linear time in its length. Step 2
starts with one search for all the flagging entries at once (their alternation): most messages
match none of them, and then no entry is tried on its own.

No Django imports and no third-party packages: standard library only.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

LEXICON_DIR = Path(__file__).resolve().parent
LEXICON_FILES: dict[str, str] = {"en": "lexicon_en.json", "pt-br": "lexicon_pt.json"}
LANGUAGES: tuple[str, ...] = tuple(LEXICON_FILES)
_LANGUAGE_ALIASES = {
    "en": "en",
    "en-us": "en",
    "en-gb": "en",
    "english": "en",
    "pt": "pt-br",
    "pt-br": "pt-br",
    "pt_br": "pt-br",
    "portuguese": "pt-br",
}

SEVERITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3}
THIRD_PARTY = "third_party"

# How many tokens before a hit the negation and third-party checks look at. Four covers
# "I would never ever ..." / "eu nunca na vida ..." without reaching into unrelated words.
WINDOW_TOKENS = 4

_PUNCTUATION = {
    ".": ".",
    ",": ",",
    ";": ";",
    ":": ":",
    "!": "!",
    "?": "?",
    "…": ".",
    "¿": "?",
    "¡": "!",
}
_SENTENCE_END = {".", "!", "?"}
# Apostrophes are removed so "don't", "dont" and "don’t" normalise alike.
_APOSTROPHES = {"'", "’", "‘", "`", "´", "ʼ"}
_MACRO = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_SEVERITIES = {None, "low", "medium", "high"}


@dataclass(frozen=True)
class Detection:
    """One hit: what was matched, how severe, and where in the original message."""

    severity: str  # "high" | "medium" | "low"
    category: str  # e.g. "suicidal_intent", "self_harm", "passive_ideation", "third_party"
    start: int  # span in the original text: text[start:end]
    end: int
    language: str  # language of the lexicon entry that matched: "en" or "pt-br"
    entry_id: str  # lexicon entry id, so reviewers and audits can see which rule fired
    matched_text: str  # text[start:end]

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]


@dataclass(frozen=True)
class Entry:
    id: str
    language: str
    regex: re.Pattern[str]
    severity: str | None  # None marks an exclusion (figurative or benign use)
    category: str
    person: str  # "first": the pattern fixes the subject; "any": subject must be checked


@dataclass(frozen=True)
class LanguageRules:
    language: str
    entries: tuple[Entry, ...]
    negators: frozenset[str]
    negation_breakers: frozenset[str]
    clause_breakers: frozenset[str]
    third_party_cues: frozenset[str]
    first_person: frozenset[str]
    context_cues: frozenset[str]
    # Every entry that can raise a hit (severity not null) as one alternation: a message it
    # does not match anywhere has no hit in this language, and the entries need not be tried
    # one by one. Exclusions only ever cancel hits, so they are left out. (Most messages are
    # quiet: the combined search costs about a third of the entry-by-entry scan; issue 19.)
    screen: re.Pattern[str] | None  # None: no entry can flag


def _screen_pattern(entries: Sequence[Entry]) -> re.Pattern[str] | None:
    """One pattern matching wherever some flagging entry matches (None when there are none).
    A regex alternation tries every branch at each position, so it finds a match exactly when
    one of the entries has a match."""
    sources = [e.regex.pattern for e in entries if e.severity is not None]
    return re.compile("|".join(f"(?:{s})" for s in sources)) if sources else None


@dataclass(frozen=True)
class _Normalized:
    text: str
    index: tuple[int, ...]  # index[i] = position in the original text of normalised char i


@dataclass(frozen=True)
class _Hit:
    entry: Entry
    start: int  # normalised offsets
    end: int
    severity: str | None
    category: str


class LexiconError(ValueError):
    """The lexicon file is malformed (raised at load time, never while screening)."""


def normalize(text: str) -> tuple[str, list[int]]:
    """Return the matching form of ``text`` and, per character, its index in ``text``."""
    norm = _normalize(text)
    return norm.text, list(norm.index)


def _normalize(text: str) -> _Normalized:
    chars: list[str] = []
    index: list[int] = []

    def space(i: int) -> None:
        if chars and chars[-1] != " ":
            chars.append(" ")
            index.append(i)

    for i, ch in enumerate(text):
        if ch in _APOSTROPHES:
            continue
        if ch in _PUNCTUATION:
            space(i)
            chars.append(_PUNCTUATION[ch])
            index.append(i)
            space(i)
            continue
        for part in unicodedata.normalize("NFKD", ch):
            if unicodedata.combining(part):
                continue
            for c in part.casefold():
                if c.isalnum():
                    chars.append(c)
                    index.append(i)
                else:
                    space(i)
    if chars and chars[-1] == " ":
        chars.pop()
        index.pop()
    return _Normalized("".join(chars), tuple(index))


def _canonical_language(language: str | None) -> tuple[str, ...]:
    if language is None:
        return LANGUAGES
    key = language.strip().lower()
    if key not in _LANGUAGE_ALIASES:
        raise ValueError(f"unsupported language {language!r}; use one of {LANGUAGES} or None")
    return (_LANGUAGE_ALIASES[key],)


def _expand(pattern: str, macros: Mapping[str, str], where: str) -> str:
    # Macros may use other macros; a depth limit turns a cycle into a clear error.
    for _ in range(5):
        if not _MACRO.search(pattern):
            return pattern

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in macros:
                raise LexiconError(f"{where}: unknown macro {{{name}}}")
            return macros[name]

        pattern = _MACRO.sub(sub, pattern)
    raise LexiconError(f"{where}: macros nested too deeply")


def load_rules(language: str, path: Path | None = None) -> LanguageRules:
    """Load and compile one language's lexicon (uncached; use :class:`Detector` to screen)."""
    path = path or LEXICON_DIR / LEXICON_FILES[language]
    data = json.loads(path.read_text(encoding="utf-8"))
    macros: dict[str, str] = data.get("macros", {})
    entries: list[Entry] = []
    seen: set[str] = set()
    for raw in data["entries"]:
        entry_id = raw.get("id", "")
        where = f"{path.name}:{entry_id or '?'}"
        if not entry_id or entry_id in seen:
            raise LexiconError(f"{where}: every entry needs a unique id")
        seen.add(entry_id)
        severity = raw.get("severity")
        if severity not in _SEVERITIES:
            raise LexiconError(f"{where}: severity must be high, medium, low or null")
        category = raw.get("category") or ("exclusion" if severity is None else "")
        if not category:
            raise LexiconError(f"{where}: missing category")
        person = raw.get("person", "first")
        if person not in {"first", "any"}:
            raise LexiconError(f"{where}: person must be 'first' or 'any'")
        source = _expand(raw["pattern"], macros, where)
        try:
            # \b on both sides: patterns match whole words of the normalised text.
            regex = re.compile(rf"\b(?:{source})\b")
        except re.error as exc:
            raise LexiconError(f"{where}: bad pattern: {exc}") from exc
        entries.append(Entry(entry_id, language, regex, severity, category, person))

    try:
        screen = _screen_pattern(entries)
    except re.error as exc:  # e.g. the same group name in two entries
        raise LexiconError(
            f"{path.name}: the entries do not combine into one pattern: {exc}"
        ) from exc

    def words(key: str) -> frozenset[str]:
        return frozenset(_normalize(w).text for w in data.get(key, []))

    return LanguageRules(
        language=language,
        entries=tuple(entries),
        negators=words("negators"),
        negation_breakers=words("negation_breakers"),
        clause_breakers=words("clause_breakers"),
        third_party_cues=words("third_party_cues"),
        first_person=words("first_person"),
        context_cues=words("context_cues"),
        screen=screen,
    )


@cache
def _cached_rules(language: str) -> LanguageRules:
    # Module-level cache: the lexicon is read and compiled once per process.
    return load_rules(language)


def _window(norm: str, start: int, rules: LanguageRules) -> list[str]:
    """Up to WINDOW_TOKENS tokens before ``start``, stopping at a clause boundary."""
    tokens: list[str] = []
    # Looking back a bounded number of characters keeps this O(1) per hit.
    for token in reversed(norm[max(0, start - 120) : start].split()):
        if token in _PUNCTUATION.values() or token in rules.clause_breakers:
            break
        tokens.append(token)
        if len(tokens) == WINDOW_TOKENS:
            break
    tokens.reverse()
    return tokens


def _is_negated(window: Sequence[str], rules: LanguageRules) -> bool:
    for pos in range(len(window) - 1, -1, -1):
        if window[pos] in rules.negators:
            # "I don't know why I want to die": the negation belongs to "know", not to the hit.
            return not any(t in rules.negation_breakers for t in window[pos + 1 :])
    return False


def _sentence_tokens(norm: str, start: int, end: int) -> list[str]:
    left = max(norm.rfind(p, 0, start) for p in _SENTENCE_END)
    rights = [i for i in (norm.find(p, end) for p in _SENTENCE_END) if i != -1]
    right = min(rights) if rights else len(norm)
    return norm[left + 1 : right].split()


def _scan(norm: str, rules: LanguageRules) -> list[_Hit]:
    hits: list[_Hit] = []
    if rules.screen is None or rules.screen.search(norm) is None:
        return hits  # no flagging entry matches anywhere: exclusions alone flag nothing
    for entry in rules.entries:
        for m in entry.regex.finditer(norm):
            start, end = m.span()
            if start == end:
                continue
            window = _window(norm, start, rules)
            severity, category = entry.severity, entry.category
            if severity is not None:
                if _is_negated(window, rules):
                    continue
                if entry.person == "any" and any(t in rules.third_party_cues for t in window):
                    severity, category = "low", THIRD_PARTY
                if category == THIRD_PARTY or entry.person == "any":
                    sentence = _sentence_tokens(norm, start, end)
                    in_context = any(t in rules.context_cues for t in sentence)
                    first_person = any(t in rules.first_person for t in sentence)
                    # Fiction and informational talk about *others* is not a disclosure.
                    if in_context and (category == THIRD_PARTY or not first_person):
                        continue
            hits.append(_Hit(entry, start, end, severity, category))
    return hits


def _resolve_overlaps(hits: Iterable[_Hit]) -> list[_Hit]:
    # Longest first; among equal lengths exclusions first, then the most severe.
    def key(h: _Hit) -> tuple[int, int, int]:
        rank = 4 if h.severity is None else SEVERITY_RANK[h.severity]
        return (-(h.end - h.start), -rank, h.start)

    kept: list[_Hit] = []
    for hit in sorted(hits, key=key):
        if all(hit.end <= k.start or hit.start >= k.end for k in kept):
            kept.append(hit)
    return [h for h in kept if h.severity is not None]


class Detector:
    """Screens messages against the lexicons of the chosen languages (loaded once, cached)."""

    def __init__(self, languages: Sequence[str] | None = None) -> None:
        chosen = LANGUAGES if languages is None else languages
        self._rules = {lang: _cached_rules(lang) for lang in self._resolve(chosen)}

    @staticmethod
    def _resolve(languages: Sequence[str]) -> tuple[str, ...]:
        out: list[str] = []
        for lang in languages:
            for canonical in _canonical_language(lang):
                if canonical not in out:
                    out.append(canonical)
        return tuple(out)

    def detect_all(self, text: str, language: str | None = None) -> list[Detection]:
        """Every hit that survives negation/context rules, in order of position."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        norm = _normalize(text)
        if not norm.text:
            return []
        wanted = tuple(self._rules) if language is None else _canonical_language(language)
        detections: list[Detection] = []
        for lang in wanted:
            if lang not in self._rules:
                raise ValueError(f"this Detector was not loaded with language {lang!r}")
            for hit in _resolve_overlaps(_scan(norm.text, self._rules[lang])):
                start = norm.index[hit.start]
                end = norm.index[hit.end - 1] + 1
                assert hit.severity is not None  # exclusions were removed above
                detections.append(
                    Detection(
                        severity=hit.severity,
                        category=hit.category,
                        start=start,
                        end=end,
                        language=lang,
                        entry_id=hit.entry.id,
                        matched_text=text[start:end],
                    )
                )
        detections.sort(key=lambda d: (d.start, -d.rank))
        return detections

    def detect(self, text: str, language: str | None = None) -> Detection | None:
        """The most severe hit (earliest on ties), or None when nothing concerning matched."""
        hits = self.detect_all(text, language)
        if not hits:
            return None
        return min(hits, key=lambda d: (-d.rank, d.start))


@lru_cache(maxsize=1)
def default_detector() -> Detector:
    """The shared, all-languages detector used by :func:`detect`."""
    return Detector()


def detect(text: str, language: str | None = None) -> Detection | None:
    """Screen one message. ``language``: "en", "pt-br" or None to try both lexicons."""
    return default_detector().detect(text, language)


def _label_of(item: Any) -> tuple[str, str | None, str | None]:
    if isinstance(item, Mapping):
        return item["text"], item.get("language"), item.get("expected")
    if len(item) == 2:
        return item[0], None, item[1]
    return item[0], item[1], item[2]


def evaluate(table: Iterable[Any], detector: Detector | None = None) -> dict[str, Any]:
    """Precision/recall of the detector on a labelled list.

    Each item is a mapping ``{"text", "language" (optional), "expected"}`` or a tuple
    ``(text, expected)`` / ``(text, language, expected)``, where ``expected`` is the severity a
    reviewer would assign ("high"/"medium"/"low") or None for a message that should not be
    flagged. Returns counts, precision, recall, F1, the share of true positives whose severity
    matches, and the texts of the false positives and false negatives.
    """
    detector = detector or default_detector()
    tp = fp = fn = tn = same_severity = 0
    false_positives: list[str] = []
    false_negatives: list[str] = []
    for item in table:
        text, language, expected = _label_of(item)
        found = detector.detect(text, language)
        if expected is not None and found is not None:
            tp += 1
            same_severity += found.severity == expected
        elif expected is not None:
            fn += 1
            false_negatives.append(text)
        elif found is not None:
            fp += 1
            false_positives.append(text)
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else None
    )
    return {
        "n": tp + fp + fn + tn,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "severity_agreement": same_severity / tp if tp else None,
        "false_positive_texts": false_positives,
        "false_negative_texts": false_negatives,
    }
