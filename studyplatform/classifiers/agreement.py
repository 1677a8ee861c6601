"""Agreement between two sets of labels for the same units (a classifier and a human coder, or
two coders): Cohen's kappa (weighted, linear or quadratic, for ordinal answers), precision,
recall and F1, each with a percentile bootstrap interval that resamples units.

Pure Python and numpy (no Django), like analysis/stats: the coding pages and the export call it
with plain lists, and a notebook can too.

Definitions (Cohen 1960, "A coefficient of agreement for nominal scales", Educational and
Psychological Measurement 20:37-46; Cohen 1968 for the weighted form):

    kappa = (p_o - p_e) / (1 - p_e)
    weighted kappa = 1 - sum(w * observed) / sum(w * expected), with disagreement weights
        w_ij = |i - j| / (k - 1) (linear) or ((i - j) / (k - 1))^2 (quadratic)

where `observed` is the k x k table of proportions and `expected` the product of its margins.
Kappa is undefined (None) when chance agreement is 1 (both raters used one and the same level
throughout): no figure is better than a made-up one.

Precision, recall and F1 take the first set of labels as the reference ("truth") and the second
as the prediction. For a binary classifier they are those of the positive level; for ordinal
and categorical answers they are macro averages over the levels either set used (a level
neither set used has no precision or recall to average).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

WEIGHTS = (None, "linear", "quadratic")
# Enough resamples that a 95% interval's ends move by well under 0.01 between seeds, few enough
# to compute on a page request for a few hundred units.
DEFAULT_RESAMPLES = 1000


def _codes(a: Sequence[str], b: Sequence[str], levels: Sequence[str]) -> tuple[np.ndarray, ...]:
    if len(a) != len(b):
        raise ValueError("both label lists must be the same length (one label per unit each)")
    index = {code: i for i, code in enumerate(levels)}
    unknown = sorted({x for x in (*a, *b) if x not in index})
    if unknown:
        raise ValueError(f"labels not among the levels: {', '.join(unknown[:5])}")
    return (
        np.fromiter((index[x] for x in a), dtype=np.int64, count=len(a)),
        np.fromiter((index[x] for x in b), dtype=np.int64, count=len(b)),
    )


def _table(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    table = np.zeros((k, k), dtype=float)
    np.add.at(table, (x, y), 1.0)
    return table


def _kappa_from_table(table: np.ndarray, weights: str | None) -> float | None:
    n = table.sum()
    k = table.shape[0]
    if n == 0:
        return None
    observed = table / n
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j) / max(k - 1, 1)
    elif weights == "quadratic":
        w = ((i - j) / max(k - 1, 1)) ** 2
    else:
        raise ValueError(f"weights must be one of {WEIGHTS}")
    disagreement_expected = float((w * expected).sum())
    if disagreement_expected <= 1e-12:
        return None
    return 1.0 - float((w * observed).sum()) / disagreement_expected


def cohen_kappa(
    a: Sequence[str], b: Sequence[str], levels: Sequence[str], weights: str | None = None
) -> float | None:
    """Cohen's kappa of two raters over the same units; `levels` in order (ordinal weights
    read the order). None when undefined (no units, or chance agreement of 1)."""
    x, y = _codes(a, b, levels)
    return _kappa_from_table(_table(x, y, len(levels)), weights)


def _prf_from_table(table: np.ndarray, positive: int | None) -> dict[str, float | None]:
    """Reference on the rows, prediction on the columns."""

    def one(c: int) -> tuple[float | None, float | None, float | None]:
        tp = table[c, c]
        predicted = table[:, c].sum()
        actual = table[c, :].sum()
        precision = tp / predicted if predicted else None
        recall = tp / actual if actual else None
        if precision is None or recall is None:
            f1 = None
        elif precision + recall == 0:
            f1 = 0.0
        else:
            f1 = 2 * precision * recall / (precision + recall)
        return precision, recall, f1

    if positive is not None:
        p, r, f = one(positive)
        return {"precision": p, "recall": r, "f1": f}
    used = [c for c in range(table.shape[0]) if table[c, :].sum() or table[:, c].sum()]
    parts = [one(c) for c in used]

    def mean(values: list[float | None]) -> float | None:
        # A level predicted but never in the reference has precision 0 and no recall; sklearn's
        # zero_division=0 convention counts a missing figure as 0 in the macro average.
        return float(np.mean([v or 0.0 for v in values])) if values else None

    return {
        "precision": mean([p[0] for p in parts]),
        "recall": mean([p[1] for p in parts]),
        "f1": mean([p[2] for p in parts]),
    }


def precision_recall_f1(
    reference: Sequence[str],
    prediction: Sequence[str],
    levels: Sequence[str],
    positive: str | None = None,
) -> dict[str, float | None]:
    """Precision, recall and F1 of `prediction` against `reference`: of the `positive` level
    when given (binary), else macro-averaged over the levels either list used."""
    x, y = _codes(reference, prediction, levels)
    pos = None if positive is None else list(levels).index(positive)
    return _prf_from_table(_table(x, y, len(levels)), pos)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float | None],
    n: int,
    *,
    seed: int,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic(indices)` over `resamples` draws of n unit
    indices with replacement (seeded, so a page shows the same interval every time). Draws in
    which the statistic is undefined are left out; None when fewer than half are defined."""
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        value = statistic(rng.integers(0, n, size=n))
        if value is not None:
            values.append(value)
    if len(values) < resamples / 2:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Figure:
    value: float | None
    ci: tuple[float, float] | None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "value": self.value,
            "ci_low": self.ci[0] if self.ci else None,
            "ci_high": self.ci[1] if self.ci else None,
        }


@dataclass(frozen=True)
class Agreement:
    """Agreement of `prediction` with `reference` over `n` units."""

    n: int
    percent_agreement: float | None
    kappa: Figure
    precision: Figure
    recall: Figure
    f1: Figure
    # Ordinal answers only: weighted kappa, keyed "linear" and "quadratic".
    weighted_kappa: dict[str, Figure] = field(default_factory=dict)
    # "positive level" for binary, "macro" otherwise: what precision, recall and F1 are of.
    averaging: str = "macro"

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "percent_agreement": self.percent_agreement,
            "kappa": self.kappa.as_dict(),
            "weighted_kappa": {k: v.as_dict() for k, v in self.weighted_kappa.items()},
            "precision": self.precision.as_dict(),
            "recall": self.recall.as_dict(),
            "f1": self.f1.as_dict(),
            "averaging": self.averaging,
        }


def agreement(
    reference: Sequence[str],
    prediction: Sequence[str],
    *,
    levels: Sequence[str],
    output_type: str,
    seed: int,
    resamples: int = DEFAULT_RESAMPLES,
) -> Agreement:
    """Every figure for one pair of raters, each with a seeded bootstrap interval. A binary
    classifier's positive level is its first (the shipped ones list "yes" first)."""
    x, y = _codes(reference, prediction, levels)
    k = len(levels)
    n = len(x)
    positive = 0 if output_type == "binary" else None

    def with_ci(stat: Callable[[np.ndarray, np.ndarray], float | None]) -> Figure:
        value = stat(x, y) if n else None
        ci = (
            bootstrap_interval(lambda idx: stat(x[idx], y[idx]), n, seed=seed, resamples=resamples)
            if value is not None
            else None
        )
        return Figure(value, ci)

    def kappa_stat(weights: str | None):
        return lambda xs, ys: _kappa_from_table(_table(xs, ys, k), weights)

    def prf_stat(name: str):
        return lambda xs, ys: _prf_from_table(_table(xs, ys, k), positive)[name]

    weighted = {}
    if output_type == "ordinal":
        weighted = {w: with_ci(kappa_stat(w)) for w in ("linear", "quadratic")}
    return Agreement(
        n=n,
        percent_agreement=float(np.mean(x == y)) if n else None,
        kappa=with_ci(kappa_stat(None)),
        precision=with_ci(prf_stat("precision")),
        recall=with_ci(prf_stat("recall")),
        f1=with_ci(prf_stat("f1")),
        weighted_kappa=weighted,
        averaging=f"positive level {levels[0]!r}" if positive is not None else "macro",
    )
