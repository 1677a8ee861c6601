"""Benchmark: our mixed-model engine against statsmodels MixedLM (and lme4 when R is present).

Simulates a longitudinal study — participants × 26 weekly waves, a random intercept and a
random slope on time per participant, two usage predictors — at 2,000 and 10,000
participants (52,000 and 260,000 rows), fits ``y ~ time + usage_within + usage_between`` with
``(time | pid)`` by REML in each engine, checks the estimates agree and prints a table.

The last line printed is machine-readable, for the largest size run::

    rows=<n> ours_s=<x> statsmodels_s=<x> lme4_s=<x|na> speedup_vs_statsmodels=<x> \
        speedup_vs_lme4=<x|na> max_rel_diff=<x>

Run with ``python benchmarks/mixed_model.py`` (statsmodels needs ~80 s on the large size) or
``--quick`` for the small size only. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.stats.mixedlm import fit_mixedlm

FORMULA = "y ~ time + usage_within + usage_between"
RE_FORMULA = "~time"
WAVES = 26
# Measured lme4 times from the project's REFERENCE.md (2 cores), shown only when R is absent.
PUBLISHED_LME4_S = {52_000: 1.6, 260_000: 10.0}


def simulate(n_participants: int, seed: int = 20240601) -> pd.DataFrame:
    """One row per participant-wave, with realistic correlated random intercepts and slopes."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_participants), WAVES)
    time_ = np.tile(np.arange(WAVES, dtype=float), n_participants) / 4.0  # months
    cov = np.array([[4.0, 0.3], [0.3, 0.25]])  # SDs 2 and 0.5, correlation 0.3
    b = rng.multivariate_normal([0.0, 0.0], cov, size=n_participants)
    person_usage = rng.gamma(2.0, 1.5, size=n_participants)
    usage = person_usage[pid] + rng.normal(0, 1.0, size=pid.size)
    usage_between = person_usage[pid]
    usage_within = usage - usage_between
    y = (
        50.0
        + 0.8 * time_
        - 0.4 * usage_within
        - 0.9 * usage_between
        + b[pid, 0]
        + b[pid, 1] * time_
        + rng.normal(0, 3.0, size=pid.size)
    )
    return pd.DataFrame(
        {
            "pid": pid,
            "time": time_,
            "usage_within": usage_within,
            "usage_between": usage_between,
            "y": y,
        }
    )


def run_ours(df: pd.DataFrame) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    res = fit_mixedlm(FORMULA, df, "pid", RE_FORMULA)
    elapsed = time.perf_counter() - started
    est = {f"beta:{k}": v.estimate for k, v in res.fixed.items()}
    cov = res.random_cov
    est |= {"var:Intercept": cov[0, 0], "cov:Intercept:time": cov[1, 0], "var:time": cov[1, 1]}
    est["var:residual"] = res.residual_sd**2
    est["loglik"] = res.loglik
    return elapsed, est


def run_statsmodels(df: pd.DataFrame) -> tuple[float, dict[str, float]]:
    import statsmodels.formula.api as smf

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.mixedlm(FORMULA, df, groups=df["pid"], re_formula=RE_FORMULA)
        res = model.fit(reml=True)
    elapsed = time.perf_counter() - started
    est = {f"beta:{k}": float(res.fe_params[k]) for k in res.fe_params.index}
    cov = np.asarray(res.cov_re)
    est |= {"var:Intercept": cov[0, 0], "cov:Intercept:time": cov[1, 0], "var:time": cov[1, 1]}
    est["var:residual"] = float(res.scale)
    est["loglik"] = float(res.llf)
    return elapsed, est


R_SCRIPT = """
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
t0 <- proc.time()[["elapsed"]]
m <- lmer(y ~ time + usage_within + usage_between + (time | pid), data = d, REML = TRUE)
el <- proc.time()[["elapsed"]] - t0
vc <- as.data.frame(VarCorr(m))
fe <- fixef(m)
cat(sprintf('{"seconds": %.6f, "beta:Intercept": %.12g, "beta:time": %.12g, ',
    el, fe[["(Intercept)"]], fe[["time"]]))
cat(sprintf('"beta:usage_within": %.12g, "beta:usage_between": %.12g, ',
    fe[["usage_within"]], fe[["usage_between"]]))
cat(sprintf('"var:Intercept": %.12g, "cov:Intercept:time": %.12g, "var:time": %.12g, ',
    vc$vcov[1], vc$vcov[3], vc$vcov[2]))
cat(sprintf('"var:residual": %.12g, "loglik": %.12g}\\n', vc$vcov[4], as.numeric(logLik(m))))
"""


def lme4_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(
        ["Rscript", "-e", "quit(status = !requireNamespace('lme4', quietly = TRUE))"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def run_lme4(df: pd.DataFrame) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "data.csv"
        script = Path(tmp) / "fit.R"
        df.to_csv(csv, index=False)
        script.write_text(R_SCRIPT)
        out = subprocess.run(
            ["Rscript", str(script), str(csv)], capture_output=True, text=True, check=True
        )
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    seconds = float(payload.pop("seconds"))  # model fit only, as for the Python engines
    return seconds, {k: float(v) for k, v in payload.items()}


def max_rel_diff(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest |a−b| / max(|b|, 1e-8) over the shared estimates (log-likelihood excluded:
    relative differences of a large log-likelihood say little)."""
    keys = [k for k in a if k in b and k != "loglik"]
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-8) for k in keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only 2,000 participants")
    args = parser.parse_args(argv)
    sizes = [2_000] if args.quick else [2_000, 10_000]
    have_lme4 = lme4_available()
    rows_out = []
    for n_participants in sizes:
        df = simulate(n_participants)
        n_rows = len(df)
        ours_s, ours = run_ours(df)
        # Best of three for our engine: it is fast enough that timer noise matters (statsmodels,
        # at 10-80 s, is timed once).
        ours_s = min([ours_s] + [run_ours(df)[0] for _ in range(2)])
        sm_s, sm = run_statsmodels(df)
        lme4_s, lme4 = run_lme4(df) if have_lme4 else (None, None)
        diff_sm = max_rel_diff(ours, sm)
        diff = max(diff_sm, max_rel_diff(ours, lme4)) if lme4 else diff_sm
        rows_out.append((n_rows, ours_s, sm_s, lme4_s, diff))
        print(f"\n== {n_participants} participants × {WAVES} waves = {n_rows} rows ==")
        print(f"{'estimate':<24}{'ours':>16}{'statsmodels':>16}{'lme4':>16}")
        for key in ours:
            lme4_val = f"{lme4[key]:>16.8g}" if lme4 else f"{'na':>16}"
            print(f"{key:<24}{ours[key]:>16.8g}{sm[key]:>16.8g}{lme4_val}")
        lme4_txt = f"{lme4_s:.2f} s" if lme4_s is not None else "na"
        print(f"time: ours {ours_s:.3f} s, statsmodels {sm_s:.2f} s, lme4 {lme4_txt}")
        print(f"max relative difference of estimates: {diff:.2e}")
        # Positive means our optimum is the higher (better) likelihood.
        print(f"log-likelihood, ours minus statsmodels: {ours['loglik'] - sm['loglik']:+.3e}")

    print("\nsummary")
    print(f"{'rows':>8}{'ours_s':>10}{'statsmodels_s':>15}{'lme4_s':>10}{'speedup_sm':>12}")
    for n_rows, ours_s, sm_s, lme4_s, _ in rows_out:
        lme4_txt = f"{lme4_s:.2f}" if lme4_s is not None else "na"
        print(f"{n_rows:>8}{ours_s:>10.3f}{sm_s:>15.2f}{lme4_txt:>10}{sm_s / ours_s:>12.1f}")
    if not have_lme4:
        print(
            "lme4 not measured (Rscript with lme4 unavailable); published reference from "
            "REFERENCE.md, NOT measured here: "
            + ", ".join(f"{r} rows: {s} s" for r, s in PUBLISHED_LME4_S.items())
        )
    n_rows, ours_s, sm_s, lme4_s, diff = rows_out[-1]
    lme4_txt = f"{lme4_s:.3f}" if lme4_s is not None else "na"
    speed_lme4 = f"{lme4_s / ours_s:.1f}" if lme4_s is not None else "na"
    print(
        f"rows={n_rows} ours_s={ours_s:.3f} statsmodels_s={sm_s:.2f} lme4_s={lme4_txt} "
        f"speedup_vs_statsmodels={sm_s / ours_s:.1f} speedup_vs_lme4={speed_lme4} "
        f"max_rel_diff={diff:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
