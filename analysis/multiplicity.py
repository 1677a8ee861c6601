"""The primary family of hypotheses, its multiplicity correction, and labels on every p-value.

Pure (no Django). The protocol's analysis plan declares which tests are confirmatory:

    multiplicity:
      outcomes: [who5.percentage]       # default: every outcome of the plan
      terms: [messages_sent_within]     # default: the primary term (results["primary"]["term"])
      correction: holm                  # holm (default) | bonferroni | benjamini-hochberg

The family is every outcome × term pair. A term is a fixed effect of the model that holds the
primary term (``results["primary"]["model"]``, ``"usage_model"`` until linking names another)
or ``arm_contrast``, meaning the end-of-study contrast of every non-reference arm
(``results["arm_contrast"]``). Their p-values are adjusted together by the correction; every
other p-value in the results is labelled ``"family": "exploratory"``, so nobody reads an
unadjusted p as confirmatory.

Why Holm by default: a confirmatory family needs the family-wise error rate controlled (ICH
E9), Holm (1979) controls it under any dependence between the tests (outcomes of one cohort are
correlated), and it rejects everything Bonferroni rejects and sometimes more.
Benjamini–Hochberg (1995) controls only the false discovery rate, which suits screening many
exploratory outcomes rather than a short confirmatory list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from analysis.stats.multiple import ADJUSTMENTS

__all__ = [
    "ARM_CONTRAST_TERM",
    "CORRECTIONS",
    "DEFAULT_CORRECTION",
    "apply_multiplicity",
    "label_exploratory",
]

CORRECTIONS = tuple(ADJUSTMENTS)
DEFAULT_CORRECTION = "holm"
ARM_CONTRAST_TERM = "arm_contrast"
NAMES = {"holm": "Holm", "bonferroni": "Bonferroni", "benjamini-hochberg": "Benjamini-Hochberg"}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _members(results: Mapping[str, Any], outcomes: list[str], terms: list[str], model_key: str):
    """(outcome, term, model key, arm or None, the dict holding p) for each family member."""
    members = []
    for outcome in outcomes:
        entry = results.get("outcomes", {}).get(outcome, {})
        for term in terms:
            if term == ARM_CONTRAST_TERM:
                contrast = results.get("arm_contrast", {}).get(outcome) or {}
                rows = contrast.get("end_of_study") or []
                if not rows:
                    reason = contrast.get("error") or "no arm contrast for this outcome"
                    members.append((outcome, term, "arm_contrast", None, None, reason))
                for row in rows:
                    members.append((outcome, term, "arm_contrast", row["arm"], row, None))
                continue
            model = entry.get(model_key) or {}
            holder = (model.get("fixed") or {}).get(term)
            reason = None
            if holder is None:
                reason = model.get("error") or f"no term {term!r} in {model_key}"
            members.append((outcome, term, model_key, None, holder, reason))
    return members


def label_exploratory(results: dict[str, Any]) -> None:
    """Label every p-value in ``results`` that has no family yet as exploratory.

    Idempotent; :func:`analysis.pipeline.analyse` calls it last, so sections added after
    ``run_plan`` (sensitivity analyses, …) are labelled too.
    """
    _label_all(results)


def _label_all(node: Any, family: str = "exploratory") -> None:
    """Label every p-value holder below ``node`` that has no label yet."""
    if isinstance(node, dict):
        if "p" in node and not isinstance(node["p"], dict) and "family" not in node:
            node["family"] = family
        for key, value in node.items():
            if key not in ("primary", "multiplicity", "plan"):
                _label_all(value, family)
    elif isinstance(node, list):
        for value in node:
            _label_all(value, family)


def apply_multiplicity(results: dict[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    """Adjust the primary family, label every p-value, update ``results["primary"]``.

    Returns ``results["multiplicity"]``. Call it after every section with p-values is in
    ``results``: whatever is not in the family is labelled exploratory.
    """
    section = dict(plan.get("multiplicity") or {})
    correction = section.get("correction", DEFAULT_CORRECTION)
    if correction not in ADJUSTMENTS:
        raise ValueError(
            f"multiplicity.correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}"
        )
    primary = results.setdefault("primary", {})
    model_key = primary.get("model", "usage_model")
    outcomes = list(section.get("outcomes") or results.get("plan", {}).get("outcomes", []))
    default_terms = [primary["term"]] if primary.get("term") else []
    terms = list(section.get("terms") or default_terms)
    members = _members(results, outcomes, terms, model_key)
    pvalues = [
        np.nan if holder is None or holder.get("p") is None else float(holder["p"])
        for *_, holder, _ in members
    ]
    adjusted = ADJUSTMENTS[correction](pvalues) if members else np.zeros(0)
    rows = []
    for (outcome, term, model, arm, holder, reason), p, q in zip(
        members, pvalues, adjusted, strict=True
    ):
        row = {
            "outcome": outcome,
            "term": term,
            "model": model,
            "p": _num(p),
            "p_adjusted": _num(q),
        }
        if arm is not None:
            row["arm"] = arm
        if reason is not None:
            row["missing"] = reason
        rows.append(row)
        if holder is not None:
            holder["family"] = "primary"
            holder["p_adjusted"] = _num(q)
    _label_all(results)

    # results["primary"] keeps its keys: q is now the adjusted p of the primary term under the
    # plan's correction (None when that term is not in the declared family).
    main = primary.get("term")
    by_pair = {(r["outcome"], r["term"]): r["p_adjusted"] for r in rows if "arm" not in r}
    plan_outcomes = list(results.get("plan", {}).get("outcomes", []))
    primary["q"] = {o: by_pair.get((o, main)) for o in plan_outcomes}
    primary["method"] = NAMES[correction]
    for outcome in plan_outcomes:
        entry = results.get("outcomes", {}).get(outcome)
        if isinstance(entry, dict):
            entry["primary_q"] = primary["q"][outcome]
    return {
        "correction": correction,
        "method": NAMES[correction],
        "error_rate": "false discovery rate"
        if correction == "benjamini-hochberg"
        else "family-wise error rate",
        "outcomes": outcomes,
        "terms": terms,
        "model": model_key,
        "m": int(np.sum(~np.isnan(np.asarray(pvalues, dtype=float)))) if members else 0,
        "family": rows,
        "other_p_values": "exploratory (unadjusted)",
    }
