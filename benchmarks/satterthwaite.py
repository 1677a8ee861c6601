"""Benchmark: our Satterthwaite degrees of freedom and p-values against lmerTest.

Fits, by our engine, the sleepstudy models and a few unbalanced simulated panels (dropout,
missed waves, few participants, REML and ML) and, when ``Rscript`` with the lmerTest package is
installed (``apt-get install r-cran-lmertest``), the same models by lmerTest, printing per
coefficient our df and p beside lmerTest's and the largest absolute differences.

Without R it prints ``lmertest=na`` and compares the sleepstudy fits with reference values:
lmerTest's published summary of ``Reaction ~ Days + (Days | Subject)`` (df 17.000 for both
coefficients; Kuznetsova, Brockhoff & Christensen 2017, J Stat Softw 82(13)) and, for
``Reaction ~ Days + (1 | Subject)``, the closed-form Satterthwaite df of that balanced design
(Days 161, intercept 22.8102; derivation in tests/analysis/stats/test_stats_satterthwaite.py).

The last line printed is machine-readable::

    lmertest=<yes|na> models=<n> max_abs_df_diff=<x|na> max_rel_df_diff=<x|na> \
        max_abs_p_diff=<x|na> sleepstudy_max_abs_df_diff=<x>

lmerTest is run with a tight optimizer tolerance (bobyqa, rhoend 1e-12): with lme4's default
one the two fits stop at slightly different variance parameters and the df differ by ~1e-2 on
the random-slope panels for that reason alone. Coefficients are matched by name.

Run with ``python benchmarks/satterthwaite.py`` (a few seconds). Never part of the test run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.stats.mixedlm import fit_mixedlm

SLEEPSTUDY = Path(__file__).resolve().parent.parent / "tests" / "data" / "sleepstudy.csv"

# (model, coefficient) -> reference df, for the comparison printed when R is absent.
SLEEPSTUDY_REFERENCE = {
    ("sleepstudy (Days | Subject) REML", "Intercept"): 17.000,  # lmerTest, published
    ("sleepstudy (Days | Subject) REML", "Days"): 17.000,  # lmerTest, published
    ("sleepstudy (1 | Subject) REML", "Intercept"): 22.8102,  # closed form, balanced design
    ("sleepstudy (1 | Subject) REML", "Days"): 161.000,  # closed form, balanced design
}


@dataclass(frozen=True)
class Case:
    name: str
    data: pd.DataFrame
    formula: str  # ours; the R formula is derived from it
    groups: str
    re: str  # ours, e.g. "~wave"
    reml: bool


def unbalanced_panel(
    seed: int, n: int, waves: int, *, dropout: float, missing: float, slope_sd: float
) -> pd.DataFrame:
    """Participants × waves with monotone dropout and sporadic missed waves, two arms, usage."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), waves)
    wave = np.tile(np.arange(waves), n).astype(float)
    last = np.minimum(rng.geometric(dropout, size=n), waves - 1)  # last wave each one answered
    keep = (wave <= last[pid]) & ((wave == 0) | (rng.random(pid.size) > missing))
    arm = np.where(np.arange(n) % 2 == 0, "a", "b")[pid]
    usage = rng.gamma(3.0, 2.0, size=n)[pid] + rng.normal(0, 1.5, size=pid.size)
    y = (
        50
        + rng.normal(0, 6, size=n)[pid]
        + (0.3 + rng.normal(0, slope_sd, size=n)[pid]) * wave
        + 0.2 * usage
        + rng.normal(0, 4, size=pid.size)
    )
    frame = pd.DataFrame({"pid": pid, "wave": wave, "arm": arm, "usage": usage, "y": y})[keep]
    mean = frame.groupby("pid")["usage"].transform("mean")
    frame["usage_between"] = mean
    frame["usage_within"] = frame["usage"] - mean
    return frame.reset_index(drop=True)


def cases() -> list[Case]:
    sleep = pd.read_csv(SLEEPSTUDY)
    out = [
        Case(
            "sleepstudy (Days | Subject) REML", sleep, "Reaction ~ Days", "Subject", "~Days", True
        ),
        Case("sleepstudy (1 | Subject) REML", sleep, "Reaction ~ Days", "Subject", "~1", True),
        Case("sleepstudy (Days | Subject) ML", sleep, "Reaction ~ Days", "Subject", "~Days", False),
    ]
    panels = [
        ("panel A: 12 people, arm x wave, random slopes", 1, 12, 8, 0.15, 0.1, 0.5, "~wave"),
        ("panel B: 40 people, usage within/between", 2, 40, 6, 0.2, 0.2, 0.0, "~1"),
        ("panel C: 8 people, arm x wave, random intercept", 3, 8, 5, 0.1, 0.1, 0.0, "~1"),
        ("panel D: 60 people, usage + wave, random slopes", 4, 60, 10, 0.1, 0.25, 0.3, "~wave"),
    ]
    for name, seed, n, waves, dropout, missing, slope_sd, re in panels:
        data = unbalanced_panel(seed, n, waves, dropout=dropout, missing=missing, slope_sd=slope_sd)
        formula = (
            "y ~ usage_within + usage_between + wave" if "usage" in name else "y ~ wave * C(arm)"
        )
        for reml in (True, False) if seed == 1 else (True,):
            label = f"{name} {'REML' if reml else 'ML'}"
            out.append(Case(label, data, formula, "pid", re, reml))
    return out


def ours(case: Case) -> pd.DataFrame:
    fit = fit_mixedlm(case.formula, case.data, case.groups, case.re, reml=case.reml)
    return pd.DataFrame(
        [(name, fe.df, fe.p) for name, fe in fit.fixed.items()], columns=["term", "df", "p"]
    )


R_SCRIPT = """
suppressMessages(library(lmerTest))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
# lme4's default optimizer stops at a looser tolerance than ours; a tight one makes the
# comparison about the degrees of freedom, not about where two optimizers stopped.
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6))
m <- lmer(as.formula(args[2]), data = d, REML = (args[3] == "TRUE"), control = ctrl)
co <- summary(m)$coefficients
cat(sprintf("%s %.12g %.12g\\n", rownames(co), co[, "df"], co[, "Pr(>|t|)"]), sep = "")
"""


def r_formula(case: Case) -> str:
    """lme4 syntax: C(arm) is a plain character column in R (same treatment coding, same
    reference level, same column order)."""
    fixed = case.formula.replace("C(arm)", "arm")
    re_terms = case.re.replace("~", "").strip()
    return f"{fixed} + ({re_terms} | {case.groups})"


def lmertest_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(
        ["Rscript", "-e", "quit(status = !requireNamespace('lmerTest', quietly = TRUE))"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def theirs(case: Case) -> dict[str, tuple[float, float]]:
    """lmerTest's (df, p) per coefficient, keyed by our coefficient name."""
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "data.csv"
        script = Path(tmp) / "fit.R"
        case.data.to_csv(csv, index=False)
        script.write_text(R_SCRIPT)
        done = subprocess.run(
            ["Rscript", str(script), str(csv), r_formula(case), str(case.reml).upper()],
            capture_output=True,
            text=True,
            check=True,
        )
    rows = {}
    for line in done.stdout.strip().splitlines():
        name, df, p = line.rsplit(" ", 2)
        rows[our_term(name)] = (float(df), float(p))
    return rows


def our_term(r_name: str) -> str:
    """lme4's coefficient name in our spelling: (Intercept) -> Intercept, armb -> C(arm)[T.b]."""
    if r_name == "(Intercept)":
        return "Intercept"
    parts = []
    for part in r_name.split(":"):
        if part.startswith("arm") and part != "arm":
            part = f"C(arm)[T.{part[3:]}]"
        parts.append(part)
    return ":".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    have_r = lmertest_available()
    df_diffs: list[float] = []
    p_diffs: list[float] = []
    rel_diffs: list[float] = []
    sleep_diffs: list[float] = []
    all_cases = cases()
    for case in all_cases:
        mine = ours(case)
        ref = theirs(case) if have_r else None
        n_people = case.data[case.groups].nunique()
        print(f"\n== {case.name}: {len(case.data)} rows, {n_people} groups ==")
        print(f"{'term':<28}{'df ours':>12}{'df lmerTest':>14}{'p ours':>12}{'p lmerTest':>14}")
        for _, row in mine.iterrows():
            if ref is not None:
                r_df, r_p = ref[row["term"]]
                df_diffs.append(abs(row["df"] - r_df))
                rel_diffs.append(abs(row["df"] - r_df) / r_df)
                p_diffs.append(abs(row["p"] - r_p))
                their_df, their_p = f"{r_df:>14.4f}", f"{r_p:>14.4g}"
            else:
                their_df, their_p = f"{'na':>14}", f"{'na':>14}"
            print(f"{row['term']:<28}{row['df']:>12.4f}{their_df}{row['p']:>12.4g}{their_p}")
            reference = SLEEPSTUDY_REFERENCE.get((case.name, row["term"]))
            if reference is not None:
                sleep_diffs.append(abs(row["df"] - reference))
                print(f"{'':<28}reference df {reference:.4f} (|diff| {sleep_diffs[-1]:.1e})")
    df_txt = f"{max(df_diffs):.2e}" if df_diffs else "na"
    rel_txt = f"{max(rel_diffs):.2e}" if rel_diffs else "na"
    p_txt = f"{max(p_diffs):.2e}" if p_diffs else "na"
    print(
        f"\nlmertest={'yes' if have_r else 'na'} models={len(all_cases)} max_abs_df_diff={df_txt} "
        f"max_rel_df_diff={rel_txt} max_abs_p_diff={p_txt} "
        f"sleepstudy_max_abs_df_diff={max(sleep_diffs):.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
