"""Benchmark the text anonymizer: precision/recall per type, throughput, and scrubadub.

    .venv/bin/python benchmarks/anonymizer.py [--corpus benchmarks/data/anonymizer_corpus.jsonl]

Matching rule: a gold span counts as found if some predicted span of the same type overlaps it
(shares at least one character); a predicted span is correct if it overlaps a gold span of the
same type. Precision = correct predicted spans / predicted spans; recall = found gold spans /
gold spans. "Vault" recall is over PERSON spans that are the participant's own identifiers
(passed as `known`); "other names" recall is over the remaining PERSON spans.

Throughput: the corpus texts are repeated until at least 5 MB (10^6 bytes, UTF-8) and
anonymized with one `Anonymizer` per participant, in this single process (one core): batched
(`anonymize_many` over each participant's messages, how an export runs; this is `mb_per_s`)
and one message per `anonymize` call (printed for comparison). Time is the process's CPU time
(`time.process_time`), so a busy machine does not distort the figure; it includes detection,
overlap resolution and surrogate replacement.

scrubadub (if importable) runs on the same messages: locale en_US or pt_BR by message
language, its default detectors plus date of birth, UK postcodes (en_GB) and the participant's
known identifiers through its UserSuppliedFilthDetector. Its filth types are mapped to ours;
only types both tools detect are compared.

The last line is machine-readable:
precision=<x> recall=<x> structured_recall=<x> name_recall=<x> mb_per_s=<x> scrubadub_recall=<x>
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studyplatform.exports.anonymize import ENTITY_TYPES, Anonymizer, KnownIdentifiers  # noqa: E402

STRUCTURED = ("EMAIL", "PHONE", "URL", "IP", "CREDIT_CARD", "SSN", "CPF", "IBAN")
SCRUBADUB_TYPES = {
    "email": "EMAIL",
    "phone": "PHONE",
    "url": "URL",
    "credit_card": "CREDIT_CARD",
    "social_security_number": "SSN",
    "twitter": "HANDLE",
    "date_of_birth": "DATE_OF_BIRTH",
    "postalcode": "POSTAL_CODE",
    "name": "PERSON",
}


def load(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def known_of(row: dict) -> KnownIdentifiers | None:
    known = row.get("known")
    if not known:
        return None
    return KnownIdentifiers(
        names=tuple(known.get("names", ())),
        emails=tuple(known.get("emails", ())),
        ids=tuple(known.get("ids", ())),
    )


def overlaps(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


class Tally:
    """Counts of found gold spans and correct predictions, per type (and per PERSON kind)."""

    def __init__(self) -> None:
        self.gold: dict[str, int] = defaultdict(int)
        self.found: dict[str, int] = defaultdict(int)
        self.predicted: dict[str, int] = defaultdict(int)
        self.correct: dict[str, int] = defaultdict(int)
        self.misses: list[tuple[str, str, str]] = []
        self.false_positives: list[tuple[str, str, str]] = []

    def add(self, row: dict, predicted: list[dict], types: set[str] | None = None) -> None:
        gold = [g for g in row["spans"] if types is None or g["type"] in types]
        predicted = [p for p in predicted if types is None or p["type"] in types]
        for span in gold:
            keys = [span["type"]]
            if span["type"] == "PERSON":
                keys.append("PERSON/" + ("known" if span.get("kind") == "known" else "other"))
                if span.get("kind") == "context":
                    keys.append("PERSON/context-only")
            hit = any(p["type"] == span["type"] and overlaps(p, span) for p in predicted)
            for key in keys:
                self.gold[key] += 1
                self.found[key] += hit
            if not hit:
                self.misses.append(
                    (span["type"], row["text"][span["start"] : span["end"]], row["text"])
                )
        for span in predicted:
            self.predicted[span["type"]] += 1
            ok = any(g["type"] == span["type"] and overlaps(g, span) for g in gold)
            self.correct[span["type"]] += ok
            if not ok:
                self.false_positives.append(
                    (span["type"], row["text"][span["start"] : span["end"]], row["text"])
                )

    def recall(self, keys) -> float:
        gold = sum(self.gold[k] for k in keys)
        return sum(self.found[k] for k in keys) / gold if gold else float("nan")

    def precision(self, keys) -> float:
        predicted = sum(self.predicted[k] for k in keys)
        return sum(self.correct[k] for k in keys) / predicted if predicted else float("nan")


def run_ours(rows: list[dict]) -> Tally:
    tally = Tally()
    anonymizers: dict[str, Anonymizer] = {}
    for row in rows:
        participant = row.get("participant", row["id"])
        anonymizer = anonymizers.setdefault(participant, Anonymizer(known_of(row)))
        result = anonymizer.anonymize(row["text"])
        predicted = [{"start": s.start, "end": s.end, "type": s.type} for s in result.spans]
        tally.add(row, predicted)
    return tally


def throughput(rows: list[dict], batched: bool, minimum_bytes: int = 5_000_000) -> float:
    """MB/s over the corpus repeated to at least `minimum_bytes`, one core.

    batched: each participant's messages go through `Anonymizer.anonymize_many` (how an export
    runs); otherwise one `anonymize` call per message.
    """
    corpus_bytes = sum(len(row["text"].encode("utf-8")) for row in rows)
    repeats = -(-minimum_bytes // corpus_bytes)
    by_participant: dict[str, list[str]] = defaultdict(list)
    known: dict[str, KnownIdentifiers | None] = {}
    for row in rows:
        participant = row.get("participant", row["id"])
        by_participant[participant].append(row["text"])
        known[participant] = known_of(row)
    # CPU time of this process, not wall-clock: "one core" regardless of what else the machine
    # is running (the benchmark is single-threaded).
    started = time.process_time()
    for _ in range(repeats):
        for participant, texts in by_participant.items():
            anonymizer = Anonymizer(known[participant])
            if batched:
                anonymizer.anonymize_many(texts)
            else:
                for text in texts:
                    anonymizer.anonymize(text)
    elapsed = time.process_time() - started
    return corpus_bytes * repeats / 1e6 / elapsed


def run_scrubadub(rows: list[dict]) -> tuple[Tally, set[str]] | None:
    try:
        import scrubadub
        import scrubadub.detectors
    except Exception:  # any import failure means "not available", reported as na
        return None
    warnings.filterwarnings("ignore")
    scrubbers = {}
    for lang, locale in (("en", "en_US"), ("pt", "pt_BR")):
        scrubber = scrubadub.Scrubber(locale=locale)
        # An unsupported locale raises: then compare without date-of-birth detection.
        with contextlib.suppress(Exception):
            scrubber.add_detector(scrubadub.detectors.DateOfBirthDetector)
        scrubbers[lang] = scrubber
    postcodes = scrubadub.Scrubber(
        locale="en_GB", detector_list=[scrubadub.detectors.PostalCodeDetector]
    )
    covered: set[str] = set()
    for scrubber in [*scrubbers.values(), postcodes]:
        for name in scrubber._detectors:
            if name in SCRUBADUB_TYPES:
                covered.add(SCRUBADUB_TYPES[name])
    covered.add("PERSON")  # via the user-supplied (known identifiers) detector below
    tally = Tally()
    for row in rows:
        scrubber = scrubbers.get(row.get("lang", "en"), scrubbers["en"])
        detectors = []
        known = row.get("known") or {}
        values = set(known.get("emails", [])) | set(known.get("ids", []))
        for name in known.get("names", []):
            values.add(name)
            values.update(part for part in name.split() if len(part) > 2)
        if values:
            items = [
                {
                    "match": value,
                    "filth_type": "name",
                    "ignore_case": True,
                    "ignore_partial_word_matches": True,
                }
                for value in sorted(values)
            ]
            detectors.append(scrubadub.detectors.UserSuppliedFilthDetector(items, name="known"))
        for detector in detectors:
            scrubber.add_detector(detector)
        predicted = []
        try:
            filths = list(scrubber.iter_filth(row["text"])) + list(
                postcodes.iter_filth(row["text"])
            )
        finally:
            for detector in detectors:
                scrubber.remove_detector(detector)
        for filth in filths:
            parts = getattr(filth, "filths", [filth])  # merged filth keeps its parts
            for part in parts:
                mapped = SCRUBADUB_TYPES.get(part.type)
                if mapped:
                    predicted.append({"start": part.beg, "end": part.end, "type": mapped})
        tally.add(row, predicted, types=covered)
    return tally, covered


def fmt(value: float) -> str:
    return "na" if value != value else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", type=Path, default=ROOT / "benchmarks/data/anonymizer_corpus.jsonl"
    )
    parser.add_argument(
        "--show-errors", action="store_true", help="list misses and false positives"
    )
    args = parser.parse_args()
    rows = load(args.corpus)

    ours = run_ours(rows)
    scrub = run_scrubadub(rows)
    scrub_tally, shared = scrub if scrub else (None, set())

    gold_total = sum(ours.gold[t] for t in ENTITY_TYPES)
    print(f"corpus: {args.corpus.name}, {len(rows)} messages, {gold_total} gold spans")
    print(
        f"{'type':<22}{'gold':>6}{'pred':>6}{'precision':>11}{'recall':>9}{'scrubadub_recall':>18}"
    )
    for key in [*ENTITY_TYPES, "PERSON/known", "PERSON/other", "PERSON/context-only"]:
        type_name = key.split("/")[0]
        scrub_recall = (
            fmt(scrub_tally.recall([key])) if scrub_tally and type_name in shared else "-"
        )
        precision = fmt(ours.precision([key])) if "/" not in key else ""
        predicted = str(ours.predicted[key]) if "/" not in key else ""
        print(
            f"{key:<22}{ours.gold[key]:>6}{predicted:>6}{precision:>11}{fmt(ours.recall([key])):>9}{scrub_recall:>18}"
        )

    if args.show_errors:
        for kind, items in (("MISS", ours.misses), ("FALSE POSITIVE", ours.false_positives)):
            for span_type, value, text in items:
                print(f"{kind} {span_type} {value!r} in {text!r}")

    precision = ours.precision(ENTITY_TYPES)
    recall = ours.recall(ENTITY_TYPES)
    structured = ours.recall(STRUCTURED)
    names = ours.recall(["PERSON"])
    mb_per_s = throughput(rows, batched=True)
    mb_per_s_single = throughput(rows, batched=False)
    shared_types = sorted(shared)
    if scrub_tally:
        print(f"shared types with scrubadub: {', '.join(shared_types)}")
        print(
            f"on shared types: ours recall={fmt(ours.recall(shared_types))} "
            f"scrubadub recall={fmt(scrub_tally.recall(shared_types))} "
            f"scrubadub precision={fmt(scrub_tally.precision(shared_types))}"
        )
    scrub_recall = fmt(scrub_tally.recall(shared_types)) if scrub_tally else "na"
    print(
        f"vault_recall={fmt(ours.recall(['PERSON/known']))} "
        f"other_name_recall={fmt(ours.recall(['PERSON/other']))}"
    )
    print(
        f"throughput (one core): {mb_per_s:.2f} MB/s batched per participant, "
        f"{mb_per_s_single:.2f} MB/s one message per call"
    )
    print(
        f"precision={fmt(precision)} recall={fmt(recall)} structured_recall={fmt(structured)} "
        f"name_recall={fmt(names)} mb_per_s={mb_per_s:.2f} scrubadub_recall={scrub_recall}"
    )


if __name__ == "__main__":
    main()
