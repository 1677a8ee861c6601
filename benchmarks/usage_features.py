"""Benchmark: daily usage features and text markers on a large synthetic message log.

    .venv/bin/python benchmarks/usage_features.py [--messages 10000000] [--seed 1] [--compare]

Generates ``--messages`` messages (about 1,000 per participant, user/assistant exchanges in
sessions, several time zones incl. America/Sao_Paulo and Europe/London, English and Brazilian
Portuguese text drawn from a vocabulary that includes the lexicon words, some imported
history), times each stage of ``analysis.features`` and prints a table. ``--compare`` also
times a pure-pandas regex implementation of the word markers on a sample, to show why the
pipeline tokenises with pyarrow instead. The last line is machine-readable:

    messages=<n> total_s=<x> daily_s=<x> text_s=<x> rows_out=<n>

``daily_s`` is preparation (local times, day groups) plus the usage columns, ``text_s`` the
text markers, ``total_s`` every stage below (also imported baselines and survey windows).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.features.daily import text_marker_columns
from analysis.features.lexicons import expand_alternatives, load_lexicon
from analysis.features.usage import (
    daily_from_prepared,
    imported_baseline,
    prepare,
    window_features,
)

ZONES = [
    ("America/Sao_Paulo", "pt-br", 0.40),
    ("Europe/London", "en", 0.20),
    ("America/New_York", "en", 0.15),
    ("America/Los_Angeles", "en", 0.08),
    ("Europe/Lisbon", "pt-br", 0.05),
    ("Asia/Kolkata", "en", 0.07),
    ("Australia/Sydney", "en", 0.05),
]

COMMON = {
    "en": [
        "the",
        "a",
        "to",
        "and",
        "of",
        "it",
        "is",
        "that",
        "you",
        "in",
        "for",
        "this",
        "was",
        "with",
        "on",
        "what",
        "do",
        "have",
        "be",
        "can",
        "but",
        "not",
        "so",
        "just",
        "about",
        "how",
        "if",
        "they",
        "we",
        "he",
        "she",
        "at",
        "get",
        "know",
        "would",
        "think",
        "want",
        "like",
        "go",
        "really",
        "one",
        "time",
        "day",
        "work",
        "people",
        "there",
        "some",
        "out",
        "up",
        "all",
        "your",
        "more",
        "now",
        "been",
        "could",
        "because",
        "when",
        "make",
        "them",
        "then",
        "also",
        "help",
        "could",
        "yes",
        "no",
        "need",
        "something",
        "today",
        "feel",
        "said",
        "tell",
        "thing",
        "things",
        "should",
        "much",
        "very",
        "did",
        "got",
        "going",
        "way",
        "back",
        "still",
        "even",
        "new",
        "take",
        "right",
        "see",
        "well",
        "email",
        "write",
        "code",
        "plan",
        "week",
        "friend",
        "friends",
        "mom",
        "dad",
        "job",
        "study",
        "sleep",
        "night",
        "morning",
        "question",
        "answer",
        "idea",
        "ideas",
        "try",
        "trying",
        "maybe",
        "please",
        "could",
        "list",
        "explain",
        "why",
        "where",
        "who",
    ],
    "pt": [
        "o",
        "a",
        "de",
        "que",
        "e",
        "do",
        "da",
        "em",
        "um",
        "uma",
        "para",
        "é",
        "com",
        "não",
        "os",
        "no",
        "na",
        "se",
        "por",
        "mais",
        "as",
        "dos",
        "como",
        "mas",
        "ao",
        "ele",
        "ela",
        "das",
        "tem",
        "à",
        "seu",
        "sua",
        "ou",
        "ser",
        "quando",
        "muito",
        "há",
        "nos",
        "já",
        "está",
        "também",
        "só",
        "pelo",
        "pela",
        "até",
        "isso",
        "entre",
        "era",
        "depois",
        "sem",
        "mesmo",
        "aos",
        "ter",
        "seus",
        "quem",
        "nas",
        "esse",
        "eles",
        "estão",
        "você",
        "vc",
        "tinha",
        "foram",
        "essa",
        "num",
        "nem",
        "suas",
        "meu",
        "às",
        "minha",
        "têm",
        "numa",
        "pelos",
        "elas",
        "havia",
        "seja",
        "qual",
        "será",
        "nós",
        "tenho",
        "lhe",
        "deles",
        "essas",
        "esses",
        "pelas",
        "este",
        "fosse",
        "dele",
        "tu",
        "te",
        "vocês",
        "lhes",
        "meus",
        "minhas",
        "teu",
        "tua",
        "hoje",
        "amanhã",
        "trabalho",
        "estudar",
        "dormir",
        "noite",
        "dia",
        "semana",
        "amigo",
        "amiga",
        "mãe",
        "pai",
        "ajuda",
        "pergunta",
        "resposta",
        "ideia",
        "explica",
        "porque",
        "onde",
        "tá",
        "tô",
        "pra",
        "gente",
        "coisa",
        "coisas",
        "acho",
        "sei",
    ],
}


def _vocabulary(lang: str) -> tuple[np.ndarray, np.ndarray]:
    """Words and sampling weights: Zipf-weighted common words, rarer lexicon words."""
    lex = load_lexicon(lang)
    common = COMMON[lang]
    affect = sorted(lex.positive | lex.negative)
    fp = sorted(lex.first_person)
    words = common + fp + affect
    w_common = 1.0 / np.arange(1, len(common) + 1) ** 0.8
    w_fp = np.full(len(fp), w_common.sum() * 0.06 / len(fp))
    w_aff = np.full(len(affect), w_common.sum() * 0.04 / len(affect))
    weights = np.concatenate([w_common, w_fp, w_aff])
    return np.array(words, dtype=object), weights / weights.sum()


def _sentence_pool(
    rng: np.random.Generator, lang: str, size: int, median_words: float, phrase_rate: float
) -> pa.Array:
    words, weights = _vocabulary(lang)
    lengths = np.maximum(1, rng.lognormal(np.log(median_words), 0.8, size).astype(int))
    draws = rng.choice(len(words), size=int(lengths.sum()), p=weights)
    lexicon_file = Path(__file__).resolve().parent.parent / "analysis/lexicons"
    phrases = [
        p
        for line in (lexicon_file / f"relationship_{lang}.txt").read_text().splitlines()
        if line and not line.startswith("#")
        for p in expand_alternatives(line)
    ]
    out, pos = [], 0
    for n in lengths:
        s = " ".join(words[draws[pos : pos + n]])
        pos += n
        r = rng.random()
        if r < phrase_rate:
            s = s + ", " + phrases[rng.integers(len(phrases))]
        elif r < 0.5:
            s = s.capitalize() + rng.choice([".", "?", "!", "..."])
        out.append(s)
    return pa.array(out, type=pa.large_string())


def _str_series(pool: pa.Array, idx: np.ndarray) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pool.take(pa.array(idx))])))


def generate(n_messages: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic (messages, participants) pair shaped like a real study's log."""
    rng = np.random.default_rng(seed)
    n_ex = max(1, n_messages // 2)
    P = max(1, n_messages // 1000)
    zone_i = rng.choice(len(ZONES), size=P, p=[z[2] for z in ZONES])
    codes = np.array([f"P{i:06d}" for i in range(P)], dtype=object)
    share = rng.gamma(2.0, 1.0, P)
    per = np.maximum(1, np.floor(share / share.sum() * n_ex).astype(np.int64))
    per[-1] += n_ex - per.sum()
    if per[-1] < 1:
        per = np.full(P, n_ex // P)
        per[-1] += n_ex - per.sum()
    pe = np.repeat(np.arange(P), per)
    first_of_p = np.concatenate(([0], np.cumsum(per)[:-1]))
    # Gaps between exchanges: mostly within a session (minutes), sometimes a new session.
    big = rng.random(n_ex) < 0.12
    gaps = np.where(big, rng.exponential(8 * 3600, n_ex), rng.exponential(100, n_ex))
    gaps[first_of_p] = 0
    cum = np.cumsum(gaps)
    within = cum - np.repeat(cum[first_of_p], per)
    start = pd.Timestamp("2025-01-06", tz="UTC").value + rng.integers(0, 30 * 86400, P) * 10**9
    t_user = np.repeat(start, per) + (within * 1e9).astype(np.int64)
    latency = rng.lognormal(np.log(1200), 0.5, n_ex)
    t_asst = t_user + (latency * 1e6).astype(np.int64) + rng.integers(2, 20, n_ex) * 10**9

    new_conv = rng.random(n_ex) < 0.08
    new_conv[first_of_p] = True
    conv_id = np.cumsum(new_conv) - 1
    has_import = rng.random(P) < 0.3
    rank = np.arange(n_ex) - np.repeat(first_of_p, per)
    imported_ex = has_import[pe] & (rank < 100)

    lang = np.array([ZONES[z][1] for z in zone_i], dtype=object)
    is_pt = lang[pe] == "pt-br"
    user_pool = {
        "en": _sentence_pool(rng, "en", 40_000, 11, 0.01),
        "pt": _sentence_pool(rng, "pt", 40_000, 11, 0.01),
    }
    asst_pool = {
        "en": _sentence_pool(rng, "en", 8_000, 90, 0.0),
        "pt": _sentence_pool(rng, "pt", 8_000, 90, 0.0),
    }
    u_idx = rng.integers(0, 40_000, n_ex) + np.where(is_pt, 40_000, 0)
    a_idx = rng.integers(0, 8_000, n_ex) + np.where(is_pt, 8_000, 0)
    u_all = pa.concat_arrays([user_pool["en"], user_pool["pt"]])
    a_all = pa.concat_arrays([asst_pool["en"], asst_pool["pt"]])

    # Interleave: row 2i is exchange i's user message, row 2i+1 the assistant's reply.
    n = 2 * n_ex
    text_pool = pa.concat_arrays([u_all, a_all])
    text_idx = np.empty(n, dtype=np.int64)
    text_idx[0::2] = u_idx
    text_idx[1::2] = len(u_all) + a_idx
    created = np.empty(n, dtype=np.int64)
    created[0::2] = t_user
    created[1::2] = t_asst
    lat = np.full(n, np.nan)
    lat[1::2] = latency
    conv_pool = pa.array([f"c{i:08d}" for i in range(int(conv_id[-1]) + 1)])
    code_pool = pa.array(list(codes))
    role_pool = pa.array(["user", "assistant"])
    messages = pd.DataFrame(
        {
            "participant": _str_series(code_pool, np.repeat(pe, 2)),
            "conversation": _str_series(conv_pool, np.repeat(conv_id, 2)),
            "role": _str_series(role_pool, np.tile([0, 1], n_ex)),
            "created_at": pd.DatetimeIndex(created.view("M8[ns]")).tz_localize("UTC"),
            "text": _str_series(text_pool, text_idx),
            "latency_ms": lat,
            "imported": np.repeat(imported_ex, 2),
        }
    )
    enrolled = np.array(
        [
            t_user[f + (100 if h else 0)] if (not h or per[i] > 100) else t_user[f]
            for i, (f, h) in enumerate(zip(first_of_p, has_import, strict=True))
        ]
    )
    participants = pd.DataFrame(
        {
            "participant": codes,
            "timezone": [ZONES[z][0] for z in zone_i],
            "enrolled_at": pd.DatetimeIndex(enrolled.view("M8[ns]")).tz_localize("UTC"),
            "arm": rng.choice(["a", "b"], P),
            "language": lang,
        }
    )
    return messages, participants


def regex_markers(text: pd.Series, lang: str) -> pd.DataFrame:
    """The obvious pandas alternative: one compiled word-boundary alternation per lexicon."""
    lex = load_lexicon(lang)
    low = text.str.lower()

    def alternation(words: frozenset[str]) -> re.Pattern:
        body = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        return re.compile(rf"(?<![\w'])(?:{body})(?![\w'])")

    return pd.DataFrame(
        {
            "tokens": low.str.count(r"[^\W_]+(?:'[^\W_]+)*"),
            "first_person": low.str.count(alternation(lex.first_person)),
            "affect_positive": low.str.count(alternation(lex.positive)),
            "affect_negative": low.str.count(alternation(lex.negative)),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--compare", action="store_true", help="also time a regex approach")
    args = parser.parse_args()

    t0 = time.perf_counter()
    messages, participants = generate(args.messages, args.seed)
    gen_s = time.perf_counter() - t0
    n = len(messages)
    print(f"generated {n:,} messages, {len(participants):,} participants in {gen_s:.1f} s")

    timings: list[tuple[str, float]] = []

    def stage(name: str, fn):
        t = time.perf_counter()
        result = fn()
        timings.append((name, time.perf_counter() - t))
        return result

    prep = stage("prepare (local time, day groups)", lambda: prepare(messages, participants))
    daily = stage("daily usage (sessions, counts)", lambda: daily_from_prepared(prep))
    text_cols = stage("text markers", lambda: text_marker_columns(prep))
    for name, values in text_cols.items():
        daily[name] = values
    stage("imported baseline", lambda: imported_baseline(messages, participants))
    # Survey windows: the 7 days before every 14th day of each participant's log.
    first = daily.groupby("participant")["date"].min()
    waves = pd.DataFrame(
        {
            "participant": np.repeat(first.index.to_numpy(), 8),
            "end": np.repeat(first.to_numpy(), 8)
            + np.tile(np.arange(1, 9) * 14, len(first)).astype("m8[D]"),
        }
    )
    waves["start"] = waves["end"] - pd.Timedelta(days=7)
    windows = stage("window features", lambda: window_features(daily, waves))

    if args.compare:
        sample = min(100_000, n)
        user_rows = np.flatnonzero((messages["role"] == "user").to_numpy())[:sample]
        text = messages["text"].take(user_rows).reset_index(drop=True)
        from analysis.features.text_markers import message_markers

        t = time.perf_counter()
        message_markers(text, "en")
        ours = time.perf_counter() - t
        t = time.perf_counter()
        regex_markers(text, "en")
        theirs = time.perf_counter() - t
        print(
            f"\ncompare on {len(text):,} user messages: pyarrow tokens + dictionary lookup "
            f"{ours:.2f} s, pandas str.count regex alternation {theirs:.2f} s "
            f"(x{theirs / max(ours, 1e-9):.1f})"
        )

    print(f"\n{'stage':<36}{'seconds':>10}")
    for name, secs in timings:
        print(f"{name:<36}{secs:>10.2f}")
    total = sum(s for _, s in timings)
    print(f"{'total':<36}{total:>10.2f}")
    print(f"daily rows {len(daily):,}, windows {len(windows):,}")
    daily_s = timings[0][1] + timings[1][1]
    text_s = timings[2][1]
    print(
        f"messages={n} total_s={total:.2f} daily_s={daily_s:.2f} text_s={text_s:.2f} "
        f"rows_out={len(daily)}"
    )


if __name__ == "__main__":
    main()
