"""Design-matrix speed: analysis/stats/formula.py on formulaic (now) against the hand-written
builder it replaced (issue 17), and patsy, on the same data.

The hand-written version is read from git history (commit HANDWRITTEN_COMMIT, the last one
that had it) and loaded as a module, so the comparison needs no copy of old code in the tree;
without git it is reported as "na". patsy comes with statsmodels (requirements-dev.txt).

    .venv/bin/python benchmarks/formula_speed.py [--rows 260000] [--repeats 3]

Prints, per formula, the best of `repeats` wall times for a large panel (the size
benchmarks/mixed_model.py fits) and the per-call time on a small frame (the sensitivity
analyses rebuild a design per imputation), then one machine-readable line.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.stats import formula as current  # noqa: E402

HANDWRITTEN_COMMIT = "65450e0"
FORMULAS = [
    "y ~ time + usage_within + usage_between",
    "y ~ time * C(arm) + usage_within + C(wave)",
    "~ time",
]


def panel(rows: int, seed: int = 17) -> pd.DataFrame:
    """A participant x wave panel with numeric, text and integer-coded columns and some gaps."""
    rng = np.random.default_rng(seed)
    waves = 26
    n = max(1, rows // waves)
    pid = np.repeat(np.arange(n), waves)
    frame = pd.DataFrame(
        {
            "pid": pid,
            "time": np.tile(np.arange(waves, dtype=float), n) / 4.0,
            "wave": np.tile(np.arange(1, waves + 1) % 4 + 1, n),
            "arm": np.array(["control", "legacy", "current"])[pid % 3],
            "usage_within": rng.normal(size=pid.size),
            "usage_between": rng.gamma(2.0, 1.5, size=n)[pid],
            "y": rng.normal(50, 5, size=pid.size),
        }
    )
    frame.loc[rng.random(len(frame)) < 0.05, "y"] = np.nan
    return frame


def handwritten_module():
    try:
        source = subprocess.run(
            ["git", "show", f"{HANDWRITTEN_COMMIT}:analysis/stats/formula.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "formula_handwritten.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("formula_handwritten", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["formula_handwritten"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=260_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-calls", type=int, default=200)
    args = parser.parse_args()

    large, small = panel(args.rows), panel(260)
    old = handwritten_module()
    try:
        import patsy
    except ImportError:
        patsy = None

    def engines(frame):
        out = {"formulaic (now)": lambda f: current.design_matrices(f, frame)}
        if old is not None:
            out["hand-written"] = lambda f: old.design_matrices(f, frame)
        if patsy is not None:
            # dmatrix for one-sided formulas ("~ time"), dmatrices when there is a response.
            out["patsy"] = lambda f: (
                patsy.dmatrix(f, frame) if f.lstrip().startswith("~") else patsy.dmatrices(f, frame)
            )
        return out

    totals: dict[str, float] = {}
    print(f"large: {len(large)} rows; small: {len(small)} rows, {args.small_calls} calls")
    for formula in FORMULAS:
        if old is not None:
            # Same matrix from both builders before timing them (names and values).
            a, b = current.design_matrices(formula, large), old.design_matrices(formula, large)
            assert a.names == b.names and np.allclose(a.X, b.X), formula
        print(f"{formula}")
        for name, build in engines(large).items():
            seconds = best_of(lambda build=build, f=formula: build(f), args.repeats)
            totals[name] = totals.get(name, 0.0) + seconds
            print(f"  {name:18s} large {seconds:7.3f} s", end="")
            small_build = engines(small)[name]
            per_call = best_of(
                lambda sb=small_build, f=formula: [sb(f) for _ in range(args.small_calls)], 1
            )
            print(f"   small {per_call / args.small_calls * 1e3:6.2f} ms/call")
    fields = {
        "rows": len(large),
        "formulaic_s": totals.get("formulaic (now)"),
        "handwritten_s": totals.get("hand-written"),
        "patsy_s": totals.get("patsy"),
    }
    print(" ".join(f"{k}={'na' if v is None else round(v, 3)}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
