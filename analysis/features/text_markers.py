"""Text markers in participants' own chat messages: first-person, affect, relationship language.

For every message the pipeline counts

* ``tokens``               word tokens (letters/digits with inner apostrophes; see below),
* ``first_person``         first-person singular pronouns (I, me, my, mine, myself, I'm, ...;
                           eu, me, mim, meu, minha, meus, minhas, comigo),
* ``affect_positive`` /
  ``affect_negative``      words of the shipped affect lists ``analysis/lexicons/affect_*.txt``,
* ``relationship_phrases`` phrases of ``analysis/lexicons/relationship_*.txt`` ("I love you",
                           "só você me entende", ...), overlapping matches counted once,

in the lexicon of the participant's language. Rates are computed later from summed counts
(``first_person / tokens`` ...), so a day or a window is weighted by words, not by messages.

How it is fast: messages are processed in chunks on a thread pool (numpy and pyarrow release
the GIL). In a chunk the UTF-8 buffer is cut into raw tokens with numpy at ASCII separator
bytes, the raw tokens are dictionary-encoded by pyarrow, and only the *distinct* raw tokens are
normalised (NFC, lower case, apostrophes), split by the full Unicode rule and looked up in the
lexicons. A small category table indexed by token code then gives every occurrence its
categories, summed per message with ``np.bincount``. Phrases are matched on the same codes
with numpy (candidate positions at a phrase's first word, each following word checked by
shifting). ``benchmarks/usage_features.py --compare`` measures this against one compiled
word-boundary regex per lexicon with ``Series.str.count``, which is over ten times slower.

Tokens: a maximal run of letters, combining marks and digits, with apostrophes allowed inside
("i'm"); hyphens and punctuation split ("ajude-me" -> "ajude", "me"). Matching compares the
NFC, lower-cased token with each lexicon word both as written and without accents, so "voce"
and "você" both match "você" and a text typed with decomposed accents matches too.

No Django imports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.features.lexicons import (
    LANGUAGES,
    SEPARATOR_PATTERN,
    Lexicon,
    language_key,
    load_lexicon,
)

__all__ = ["MARKER_COLUMNS", "count_markers", "message_markers", "to_arrow_text", "word_counts"]

MARKER_COLUMNS: tuple[str, ...] = (
    "tokens",
    "first_person",
    "affect_positive",
    "affect_negative",
    "relationship_phrases",
)

# Bits of the per-word category table.
_FIRST_PERSON, _POSITIVE, _NEGATIVE = 1, 2, 4

# Messages per chunk: large enough that per-chunk Python overhead is noise, small enough that
# a chunk's token arrays (about 20 bytes per token) stay well under a gigabyte.
CHUNK_MESSAGES = 200_000


def to_arrow_text(text: pd.Series | Sequence[str | None]) -> pa.ChunkedArray:
    """The text column as an Arrow string array without copying when it is already Arrow."""
    if isinstance(text, pd.Series):
        text = text.array
    if hasattr(text, "__arrow_array__"):
        arr = text.__arrow_array__()  # Arrow-backed pandas strings: no copy
    else:
        arr = pa.array(text, from_pandas=True)
    chunked = arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])
    if pa.types.is_null(chunked.type):
        chunked = chunked.cast(pa.large_string())
    elif pa.types.is_dictionary(chunked.type):
        chunked = chunked.cast(chunked.type.value_type)
    if not (pa.types.is_string(chunked.type) or pa.types.is_large_string(chunked.type)):
        if not pa.types.is_string_view(chunked.type):
            raise TypeError(f"text must be strings, got Arrow type {chunked.type}")
        chunked = chunked.cast(pa.large_string())
    return chunked


def message_markers(
    text: pd.Series | Sequence[str | None], language: pd.Series | Sequence[str] | str
) -> pd.DataFrame:
    """Marker counts for each message (index kept from ``text`` when it is a Series).

    ``language`` is one language for all messages ("en", "pt-br") or one per message. Missing
    text (None, withheld) gives zero tokens and zero markers. Columns: ``MARKER_COLUMNS``, all
    int64.
    """
    arrow = to_arrow_text(text)
    n = len(arrow)
    if isinstance(language, str):
        codes = np.full(n, LANGUAGES.index(language_key(language)), dtype=np.int8)
    else:
        langs = pd.Series(language).astype(object).to_numpy()
        if len(langs) != n:
            raise ValueError("language must have one entry per message")
        uniq, inverse = np.unique(langs.astype(str), return_inverse=True)
        mapping = np.array([LANGUAGES.index(language_key(u)) for u in uniq], dtype=np.int8)
        codes = mapping[inverse] if n else np.zeros(0, dtype=np.int8)
    counts = count_markers(arrow, codes)
    index = text.index if isinstance(text, pd.Series) else pd.RangeIndex(n)
    return pd.DataFrame({name: counts[i] for i, name in enumerate(MARKER_COLUMNS)}, index=index)


def count_markers(
    text: pa.ChunkedArray, language_codes: np.ndarray, *, workers: int | None = None
) -> np.ndarray:
    """Counts as a ``(len(MARKER_COLUMNS), n)`` int64 array; languages index ``LANGUAGES``."""
    n = len(text)
    out = np.zeros((len(MARKER_COLUMNS), n), dtype=np.int64)
    if n == 0:
        return out
    lexicons = [load_lexicon(lang) for lang in LANGUAGES]
    starts = list(range(0, n, CHUNK_MESSAGES))
    workers = workers or min(len(starts), os.cpu_count() or 1)

    def run(start: int) -> None:
        stop = min(start + CHUNK_MESSAGES, n)
        piece = text.slice(start, stop - start).combine_chunks()
        out[:, start:stop] = _count_chunk(piece, language_codes[start:stop], lexicons)

    if workers <= 1 or len(starts) == 1:
        for s in starts:
            run(s)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, starts))
    return out


# Bytes that can be part of a word at the first, byte-level pass: ASCII letters, digits, the
# apostrophe, and every non-ASCII byte (UTF-8 multi-byte sequences are resolved later, per
# distinct raw token). Every other ASCII byte separates tokens, so cutting the buffer at them
# never splits a multi-byte character.
_WORD_BYTE = np.zeros(256, dtype=bool)
for _lo, _hi in ((ord("a"), ord("z")), (ord("A"), ord("Z")), (ord("0"), ord("9")), (128, 255)):
    _WORD_BYTE[_lo : _hi + 1] = True
_WORD_BYTE[ord("'")] = True


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets (from 0) and the UTF-8 bytes of a string array, as numpy views."""
    n = len(arr)
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    if bufs[2] is None or n == 0:
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    data = np.frombuffer(bufs[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


_SPACE_BYTE = np.zeros(256, dtype=bool)
_SPACE_BYTE[list(b" \t\n\r\x0b\x0c")] = True


def word_counts(text: pd.Series | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Whitespace-separated words per message (None counts 0), like a word processor does.

    Counted on the UTF-8 bytes with numpy (a word starts at a non-space byte after an ASCII
    space, tab or newline, or at the start of the message): about ten times faster than
    splitting the strings.
    """
    chunked = to_arrow_text(text) if isinstance(text, pd.Series) else text
    if isinstance(chunked, pa.Array):
        chunked = pa.chunked_array([chunked])
    out = []
    for start in range(0, len(chunked), 1_000_000):
        piece = chunked.slice(start, 1_000_000).combine_chunks()
        rel, data = _buffers(piece)
        word = ~_SPACE_BYTE[data]
        after_space = np.ones(data.size, dtype=bool)
        after_space[1:] = ~word[:-1]
        after_space[rel[:-1][rel[:-1] < data.size]] = True  # a message start
        begins = word & after_space
        out.append(np.diff(np.searchsorted(np.flatnonzero(begins), rel)))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _tokens(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Token codes, the row each token came from, and the dictionary of normalised tokens.

    Two passes, because a regex split over every message is the slow part (several times
    slower than everything else together). First the UTF-8 buffer is cut into raw tokens with
    numpy at separator bytes; then only the *distinct* raw tokens are normalised (NFC, lower
    case, typographic apostrophes) and split with the full Unicode rule (emoji, "…", curly
    quotes), and each raw occurrence is expanded to its normalised pieces.
    """
    n = len(arr)
    rel, data = _buffers(arr)
    word = _WORD_BYTE[data]
    # Token edges are the 0->1 and 1->0 steps of the word-byte mask.
    step = np.diff(word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(step == 1)
    ends = np.flatnonzero(step == -1)
    # A message that ends in a word byte followed by one that starts with a word byte would
    # glue two tokens together: cut there (one end and one start at the message boundary).
    inner = rel[1:-1]
    inner = inner[(inner > 0) & (inner < data.size)]
    glued = inner[word[inner] & word[inner - 1]]
    if glued.size:
        starts = np.insert(starts, np.searchsorted(starts, glued), glued)
        ends = np.insert(ends, np.searchsorted(ends, glued), glued)
    # Tokens per message from where each message starts among the token starts (searching the
    # few message offsets in the many token starts, not the other way round).
    per_message = np.diff(np.searchsorted(starts, rel, side="left"))
    raw_parents = np.repeat(np.arange(n, dtype=np.int64), per_message)
    raw_offsets = np.concatenate(([0], np.cumsum(ends - starts))).astype(np.int64)
    raw = pa.LargeStringArray.from_buffers(
        starts.size, pa.py_buffer(raw_offsets), pa.py_buffer(data[word].copy())
    )
    encoded = pc.dictionary_encode(raw)
    raw_ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)

    # Normalise and split the distinct raw tokens only.
    norm = pc.utf8_lower(pc.utf8_normalize(encoded.dictionary, "NFC"))
    norm = pc.replace_substring_regex(norm, "[\u2019\u2018]", "'")
    pieces = pc.split_pattern_regex(norm, SEPARATOR_PATTERN)
    flat = pc.utf8_trim(pc.list_flatten(pieces), "'")
    piece_of = pc.list_parent_indices(pieces).to_numpy(zero_copy_only=False)
    keep = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    flat, piece_of = pc.filter(flat, pa.array(keep)), piece_of[keep]
    canon = pc.dictionary_encode(flat)
    canon_ids = canon.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    n_pieces = np.bincount(piece_of, minlength=len(encoded.dictionary))
    first_piece = np.cumsum(n_pieces) - n_pieces
    if canon_ids.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, canon.dictionary

    if not (n_pieces >= 2).any():
        # Usual case: each distinct raw token is one normalised token or nothing (a lone
        # emoji or "…"), so a lookup replaces the expansion.
        one = np.where(n_pieces == 1, canon_ids[np.minimum(first_piece, canon_ids.size - 1)], -1)
        ids = one[raw_ids]
        if (n_pieces == 0).any():
            keep_tok = ids >= 0
            return ids[keep_tok], raw_parents[keep_tok], canon.dictionary
        return ids, raw_parents, canon.dictionary
    # Expand every raw occurrence into its pieces (a ragged arange, no Python loop).
    count = n_pieces[raw_ids]
    total = int(count.sum())
    out_start = np.cumsum(count) - count
    pos = np.arange(total) - np.repeat(out_start - first_piece[raw_ids], count)
    return canon_ids[pos], np.repeat(raw_parents, count), canon.dictionary


def _isin_small(values: np.ndarray, accepted: np.ndarray) -> np.ndarray:
    """``np.isin`` for one or two accepted codes without its per-call set-up cost."""
    if accepted.size == 1:
        return values == accepted[0]
    if accepted.size == 2:
        return (values == accepted[0]) | (values == accepted[1])
    return np.isin(values, accepted)


def _ids_of(words: Sequence[str], dictionary: pa.Array) -> np.ndarray:
    """Dictionary code of each word, -1 when the chunk never uses it."""
    if not words:
        return np.zeros(0, dtype=np.int64)
    idx = pc.index_in(pa.array(list(words), type=dictionary.type), value_set=dictionary)
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _count_chunk(arr: pa.Array, lang: np.ndarray, lexicons: list[Lexicon]) -> np.ndarray:
    n = len(arr)
    out = np.zeros((len(MARKER_COLUMNS), n), dtype=np.int64)
    ids, parents, dictionary = _tokens(arr)
    if ids.size == 0:
        return out
    out[0] = np.bincount(parents, minlength=n)

    # One row per language: category bits of every distinct word of this chunk.
    table = np.zeros((len(lexicons), len(dictionary)), dtype=np.uint8)
    for li, lex in enumerate(lexicons):
        for bit, words in (
            (_FIRST_PERSON, lex.first_person),
            (_POSITIVE, lex.positive),
            (_NEGATIVE, lex.negative),
        ):
            hit = pc.is_in(dictionary, value_set=pa.array(sorted(words), type=dictionary.type))
            table[li] |= np.where(hit.to_numpy(zero_copy_only=False), bit, 0).astype(np.uint8)
    single_language = lang.min() == lang.max()
    tok_lang = None if single_language else lang[parents]
    bits = table[lang[0]][ids] if single_language else table[tok_lang, ids]
    hit = np.flatnonzero(bits)
    if hit.size:
        rows, b = parents[hit], bits[hit]
        for row, bit in ((1, _FIRST_PERSON), (2, _POSITIVE), (3, _NEGATIVE)):
            sel = (b & bit) != 0
            out[row] = np.bincount(rows[sel], minlength=n)

    starts, lengths = [], []
    for li, lex in enumerate(lexicons):
        if not np.any(lang == li):
            continue
        s, ln = _phrase_matches(lex, ids, parents, dictionary, tok_lang, li)
        starts.append(s)
        lengths.append(ln)
    if starts:
        start = np.concatenate(starts)
        length = np.concatenate(lengths)
        if start.size:
            out[4] = np.bincount(parents[_non_overlapping(start, length)], minlength=n)
    return out


def _phrase_matches(
    lex: Lexicon,
    ids: np.ndarray,
    parents: np.ndarray,
    dictionary: pa.Array,
    tok_lang: np.ndarray | None,
    li: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Start positions and token lengths of every phrase occurrence (overlaps included)."""
    words = sorted(
        {form for phrase in lex.phrases for w in phrase for form in lex.accepted_forms(w)}
    )
    code = dict(zip(words, _ids_of(words, dictionary).tolist(), strict=True))

    def slot(word: str) -> np.ndarray:
        found = {code[f] for f in lex.accepted_forms(word)} - {-1}
        return np.array(sorted(found), dtype=ids.dtype)

    # Phrases whose every word occurs somewhere in the chunk, as arrays of accepted codes.
    viable = []
    for phrase in lex.phrases:
        slots = [slot(w) for w in phrase]
        if all(s.size for s in slots):
            viable.append(slots)
    empty = np.zeros(0, dtype=np.int64)
    if not viable:
        return empty, empty
    n_tok = ids.size
    # Candidate starts: tokens that can begin some phrase, in a message of this language.
    first = np.zeros(len(dictionary), dtype=bool)
    for slots in viable:
        first[slots[0]] = True
    cand_mask = first[ids]
    if tok_lang is not None:
        cand_mask &= tok_lang == li
    cand = np.flatnonzero(cand_mask)
    by_first: dict[bytes, np.ndarray] = {}
    starts, lengths = [], []
    for slots in viable:
        key = slots[0].tobytes()
        if key not in by_first:
            by_first[key] = cand[_isin_small(ids[cand], slots[0])]
        pos = by_first[key]
        for k, accepted in enumerate(slots[1:], start=1):
            pos = pos[pos + k < n_tok]
            nxt = pos + k
            pos = pos[_isin_small(ids[nxt], accepted) & (parents[nxt] == parents[pos])]
            if pos.size == 0:
                break
        if pos.size:
            starts.append(pos)
            lengths.append(np.full(pos.size, len(slots), dtype=np.int64))
    if not starts:
        return empty, empty
    return np.concatenate(starts).astype(np.int64), np.concatenate(lengths)


def _non_overlapping(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Starts of the matches kept when overlapping ones count once (earliest, then longest)."""
    order = np.lexsort((-length, start))
    s, e = start[order], start[order] + length[order]
    # A match is dropped when it begins before an earlier-sorted match ends. Messages occupy
    # disjoint token ranges, so this never compares matches from two messages.
    prev_end = np.concatenate(([np.iinfo(np.int64).min], np.maximum.accumulate(e)[:-1]))
    return s[s >= prev_end]
