"""Wilkinson-style model formulas turned into numeric design matrices.

A deliberately small subset of the notation that R and patsy understand, enough for the
platform's longitudinal models:

* ``y ~ t + x``            main effects, an intercept is added unless removed
* ``C(arm)``               treatment (dummy) coding, first sorted level is the reference;
                           non-numeric columns (text, categorical, bool) are coded this way too
* ``t:x``                  interaction (product of columns / dummies)
* ``a*b``                  shorthand for ``a + b + a:b``; parentheses group: ``(a + b):t``
* ``0 + ...`` / ``- 1``    no intercept; ``1 + ...`` states it explicitly
* ``~ t``                  one-sided formulas (random-effects designs)

Column names follow patsy so results line up with statsmodels: ``Intercept``, ``t``,
``C(arm)[T.b]``, ``t:x``, ``t:C(arm)[T.b]``. Rows with a missing value in any column the
formula uses are dropped; the number dropped is reported on :class:`Design`.

This module has no Django imports: it takes a pandas DataFrame and returns numpy arrays.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Design",
    "Factor",
    "Formula",
    "complete_rows",
    "design_matrices",
    "model_matrix",
    "parse_formula",
    "response_vector",
]

INTERCEPT = "Intercept"


@dataclass(frozen=True)
class Factor:
    """One column as it appears in a term; ``categorical`` is True when wrapped in ``C()``."""

    column: str
    categorical: bool = False

    @property
    def label(self) -> str:
        return f"C({self.column})" if self.categorical else self.column


# A term is an ordered tuple of distinct factors; the empty tuple is the intercept.
Term = tuple[Factor, ...]


@dataclass(frozen=True)
class Formula:
    """A parsed formula: optional response, whether there is an intercept, and the terms."""

    text: str
    response: str | None
    intercept: bool
    terms: tuple[Term, ...]

    @property
    def columns(self) -> list[str]:
        """Every data column the formula reads, response first, without duplicates."""
        seen: dict[str, None] = {}
        if self.response is not None:
            seen[self.response] = None
        for term in self.terms:
            for factor in term:
                seen[factor.column] = None
        return list(seen)


@dataclass(frozen=True)
class Design:
    """Numeric design built from a formula and a DataFrame (after dropping incomplete rows)."""

    y: np.ndarray | None
    X: np.ndarray
    names: list[str]
    n_dropped: int
    kept: np.ndarray  # boolean mask over the input rows that were used


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_.]*)|(?P<number>\d+)|(?P<op>[~+\-*:(),]))")


def _tokenize(text: str) -> list[str]:
    symbols: list[str] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _TOKEN.match(stripped, pos)
        if match is None:
            bad = stripped[pos:].strip()[:1]
            raise ValueError(f"formula {text!r}: unexpected character {bad!r}")
        symbols.append(match.group(match.lastgroup or "op"))
        pos = match.end()
    return symbols


class _Parser:
    """Recursive-descent parser; every operand evaluates to a list of terms.

    The intercept is tracked separately because only ``+``/``-`` at the top of a sum may add or
    remove it (``1``, ``0``, ``-1``), never an interaction.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.symbols = _tokenize(text)
        self.pos = 0

    def error(self, message: str) -> ValueError:
        return ValueError(f"formula {self.text!r}: {message}")

    def peek(self) -> str | None:
        return self.symbols[self.pos] if self.pos < len(self.symbols) else None

    def take(self) -> str:
        symbol = self.peek()
        if symbol is None:
            raise self.error("unexpected end of formula")
        self.pos += 1
        return symbol

    def parse(self) -> Formula:
        if "~" not in self.symbols:
            raise self.error("missing '~' (expected 'y ~ x' or '~ x')")
        response: str | None = None
        if self.peek() != "~":
            symbol = self.take()
            if not _is_name(symbol):
                raise self.error(f"response must be a column name, got {symbol!r}")
            response = symbol
        if self.take() != "~":
            raise self.error("the response must be a single column name before '~'")
        if self.peek() is None:
            raise self.error("nothing after '~'")
        intercept, terms = self.parse_sum(top=True)
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()!r}")
        terms = _dedupe(terms)
        if response is not None and any(f.column == response for t in terms for f in t):
            raise self.error(f"response {response!r} also appears on the right-hand side")
        return Formula(self.text, response, intercept, tuple(terms))

    def parse_sum(self, *, top: bool) -> tuple[bool, list[Term]]:
        intercept = True
        terms: list[Term] = []
        sign = "+"
        if self.peek() == "-":
            self.take()
            sign = "-"
        while True:
            symbol = self.peek()
            if symbol in ("0", "1"):
                self.take()
                if not top:
                    raise self.error(f"'{symbol}' is only allowed at the top level of a formula")
                # '+ 1' keeps the intercept, '+ 0' and '- 1' remove it, '- 0' adds it back.
                intercept = (symbol == "1") == (sign == "+")
            elif symbol is not None and symbol.isdigit():
                raise self.error(f"unexpected number {symbol!r} (only 0 and 1 are allowed)")
            else:
                operand = self.parse_product()
                if sign == "+":
                    terms.extend(operand)
                else:
                    drop = {frozenset(t) for t in operand}
                    terms = [t for t in terms if frozenset(t) not in drop]
            symbol = self.peek()
            if symbol not in ("+", "-"):
                return intercept, terms
            sign = self.take()
            if self.peek() in (None, ")", "+", "-", "*", ":", "~", ","):
                raise self.error(f"a term is expected after '{sign}'")

    def parse_product(self) -> list[Term]:
        result = self.parse_interaction()
        while self.peek() == "*":
            self.take()
            if self.peek() in (None, ")", "+", "-", "*", ":"):
                raise self.error("a term is expected after '*'")
            right = self.parse_interaction()
            result = _dedupe(result + right + _interact(result, right))
        return result

    def parse_interaction(self) -> list[Term]:
        result = self.parse_atom()
        while self.peek() == ":":
            self.take()
            if self.peek() in (None, ")", "+", "-", "*", ":"):
                raise self.error("a term is expected after ':'")
            result = _interact(result, self.parse_atom())
        return result

    def parse_atom(self) -> list[Term]:
        symbol = self.take()
        if symbol == "(":
            _, terms = self.parse_sum(top=False)
            if self.peek() != ")":
                raise self.error("unbalanced parentheses")
            self.take()
            if not terms:
                raise self.error("empty parentheses")
            return terms
        if symbol == "C" and self.peek() == "(":
            self.take()
            column = self.take()
            if not _is_name(column):
                raise self.error(f"C() needs a column name, got {column!r}")
            if self.peek() != ")":
                raise self.error(f"C({column} ...) takes exactly one column name")
            self.take()
            return [(Factor(column, categorical=True),)]
        if _is_name(symbol):
            if self.peek() == "(":
                raise self.error(f"unsupported function {symbol}(); only C(column) is supported")
            return [(Factor(symbol),)]
        if symbol in ("0", "1"):
            raise self.error(f"'{symbol}' cannot be part of an interaction")
        raise self.error(f"unexpected {symbol!r}")


def _is_name(symbol: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", symbol))


def _interact(left: list[Term], right: list[Term]) -> list[Term]:
    out: list[Term] = []
    for a in left:
        for b in right:
            merged = list(a)
            for factor in b:
                if factor not in merged:
                    merged.append(factor)
            out.append(tuple(merged))
    return _dedupe(out)


def _dedupe(terms: Iterable[Term]) -> list[Term]:
    seen: set[frozenset[Factor]] = set()
    out: list[Term] = []
    for term in terms:
        key = frozenset(term)
        if key not in seen:
            seen.add(key)
            out.append(term)
    return out


def parse_formula(text: str) -> Formula:
    """Parse ``text`` into a :class:`Formula`; raises ``ValueError`` naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("formula is empty")
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# Building matrices
# ---------------------------------------------------------------------------------------------


def _check_columns(formula: Formula, data: pd.DataFrame) -> None:
    for column in formula.columns:
        if column not in data.columns:
            raise ValueError(
                f"unknown column {column!r} in formula {formula.text!r} "
                f"(available: {', '.join(map(str, data.columns))})"
            )


def complete_rows(data: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Boolean mask of rows with no missing value in any of ``columns``."""
    for column in columns:
        if column not in data.columns:
            raise ValueError(f"unknown column {column!r}")
    if not columns:
        return np.ones(len(data), dtype=bool)
    return np.asarray(data[list(dict.fromkeys(columns))].notna().all(axis=1))


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _numeric(series: pd.Series, column: str) -> np.ndarray:
    values = np.asarray(series, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"column {column!r} contains infinite values")
    return values


def _levels(series: pd.Series, column: str) -> list:
    levels = sorted(pd.unique(series))
    if len(levels) < 2:
        raise ValueError(
            f"column {column!r} is used as categorical but has {len(levels)} level(s) "
            "after dropping missing rows; at least 2 are needed"
        )
    return levels


def _factor_columns(
    factor: Factor, frame: pd.DataFrame, *, full: bool
) -> tuple[list[np.ndarray], list[str]]:
    series = frame[factor.column]
    if not factor.categorical and _is_numeric(series):
        return [_numeric(series, factor.column)], [factor.column]
    levels = _levels(series, factor.column)
    values = np.asarray(series)
    # Treatment coding: the first sorted level is the reference and gets no column (unless the
    # model has no intercept, where the first categorical main effect is coded in full).
    used = levels if full else levels[1:]
    prefix = "" if full else "T."
    columns = [(values == level).astype(np.float64) for level in used]
    names = [f"{factor.label}[{prefix}{level}]" for level in used]
    return columns, names


def _is_categorical(factor: Factor, frame: pd.DataFrame) -> bool:
    return factor.categorical or not _is_numeric(frame[factor.column])


def _patsy_order(terms: Sequence[Term], frame: pd.DataFrame) -> list[Term]:
    """Order terms as patsy does, so columns line up with statsmodels' output.

    Terms are bucketed by the set of numeric factors they contain (buckets in order of first
    appearance, the bucket without numeric factors first) and sorted by degree within a bucket.
    """
    buckets: dict[frozenset[str], list[Term]] = {}
    for term in terms:
        key = frozenset(f.column for f in term if not _is_categorical(f, frame))
        buckets.setdefault(key, []).append(term)
    keys = list(buckets)
    if frozenset() in buckets:
        keys.remove(frozenset())
        keys.insert(0, frozenset())
    return [term for key in keys for term in sorted(buckets[key], key=len)]


def model_matrix(formula: Formula, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Right-hand-side matrix for a frame that has no missing values in the used columns."""
    _check_columns(formula, frame)
    n = len(frame)
    columns: list[np.ndarray] = []
    names: list[str] = []
    if formula.intercept:
        columns.append(np.ones(n))
        names.append(INTERCEPT)
    # Which lower-order terms the model already spans. A categorical factor gets reduced
    # (treatment) coding when the term without it is spanned — e.g. C(arm) after the intercept,
    # t:C(arm) after t — and full coding otherwise (no intercept, or t:C(arm) without t), so
    # the design stays full rank without silently forcing an effect to zero (patsy's rule).
    spanned: set[frozenset[Factor]] = {frozenset()} if formula.intercept else set()
    for term in _patsy_order(formula.terms, frame):
        full_factors = [
            f for f in term if _is_categorical(f, frame) and frozenset(term) - {f} not in spanned
        ]
        if len(full_factors) > 1:
            labels = ", ".join(f.label for f in full_factors)
            raise ValueError(
                f"term {':'.join(f.label for f in term)!r} needs its lower-order terms: add "
                f"main effects for {labels} to formula {formula.text!r}"
            )
        for f in full_factors:
            spanned.add(frozenset(term) - {f})
        spanned.add(frozenset(term))
        term_columns: list[np.ndarray] = [np.ones(n)]
        term_names: list[str] = [""]
        for factor in term:
            f_cols, f_names = _factor_columns(factor, frame, full=factor in full_factors)
            term_columns = [a * b for a in term_columns for b in f_cols]
            term_names = [f"{a}:{b}" if a else b for a in term_names for b in f_names]
        columns.extend(term_columns)
        names.extend(term_names)
    matrix = np.column_stack(columns) if columns else np.empty((n, 0))
    return np.ascontiguousarray(matrix, dtype=np.float64), names


def response_vector(formula: Formula, frame: pd.DataFrame) -> np.ndarray:
    """The response column as float64; raises if it is not numeric."""
    assert formula.response is not None
    series = frame[formula.response]
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise ValueError(f"response column {formula.response!r} is not numeric")
    return _numeric(series, formula.response)


def design_matrices(
    formula: str | Formula, data: pd.DataFrame, *, extra_columns: Sequence[str] = ()
) -> Design:
    """Build ``y`` (if the formula has a response) and ``X`` from ``data``.

    Rows missing any used column, or any of ``extra_columns`` (e.g. a cluster id), are dropped.
    """
    parsed = parse_formula(formula) if isinstance(formula, str) else formula
    _check_columns(parsed, data)
    kept = complete_rows(data, [*parsed.columns, *extra_columns])
    if not kept.any():
        raise ValueError(f"no complete rows for formula {parsed.text!r}")
    frame = data.loc[kept]
    X, names = model_matrix(parsed, frame)
    y = response_vector(parsed, frame) if parsed.response is not None else None
    return Design(y=y, X=X, names=names, n_dropped=int((~kept).sum()), kept=kept)
