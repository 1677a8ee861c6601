"""`python -m analysis.stats.mixedlm`: JSON output shape and exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SLEEPSTUDY = ROOT / "tests" / "data" / "sleepstudy.csv"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analysis.stats.mixedlm", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_it_prints_the_fit_as_json():
    # when: the CLI fits the sleepstudy model with a random slope
    done = run_cli(
        "--data", str(SLEEPSTUDY), "--formula", "Reaction ~ Days",
        "--groups", "Subject", "--re", "~Days",
    )  # fmt: skip
    # then: exit 0 and the documented JSON shape
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= {
        "fixed", "random", "residual_sd", "loglik", "reml_criterion",
        "n_obs", "n_groups", "converged",
    }  # fmt: skip
    assert set(out["fixed"]) == {"Intercept", "Days"}
    assert set(out["fixed"]["Days"]) == {"estimate", "se", "ci_low", "ci_high", "df", "t", "p"}
    assert out["p_method"] == "Satterthwaite t"
    assert out["fixed"]["Days"]["df"] == pytest.approx(17.0, abs=1e-3)
    assert out["fixed"]["Days"]["estimate"] == pytest.approx(10.46728596, rel=1e-7)
    assert out["random"]["sd"]["Days"] == pytest.approx(5.922137659, rel=1e-5)
    assert out["random"]["corr"]["Intercept:Days"] == pytest.approx(0.06555124, rel=1e-4)
    assert out["reml_criterion"] == pytest.approx(1743.628272, abs=1e-6)
    assert (out["n_obs"], out["n_groups"], out["converged"]) == (180, 18, True)
    assert out["method"] == "REML"


def test_it_fits_by_ml_with_a_random_intercept_by_default():
    done = run_cli(
        "--data", str(SLEEPSTUDY), "--formula", "Reaction ~ Days", "--groups", "Subject", "--ml"
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["method"] == "ML"
    assert out["reml_criterion"] is None
    assert list(out["random"]["sd"]) == ["Intercept"]
    assert out["random"]["corr"] == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/nonexistent/x.csv"], "error: data file not found: /nonexistent/x.csv"),
        (["--formula", "Reaction ~ Hours"], "error: unknown column 'Hours'"),
        (["--groups", "Patient"], "error: unknown groups column 'Patient'"),
        (
            ["--formula", "Reaction ~ Days +"],
            "error: formula 'Reaction ~ Days +': a term is expected after '+'",
        ),
    ],
)
def test_it_exits_1_with_a_one_line_message_on_bad_input(args, message):
    defaults = {"--data": str(SLEEPSTUDY), "--formula": "Reaction ~ Days", "--groups": "Subject"}
    defaults.update(dict(zip(args[::2], args[1::2], strict=True)))
    done = run_cli(*[item for pair in defaults.items() for item in pair])
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == message
    assert len(done.stderr.strip().splitlines()) == 1


def test_it_refuses_an_unidentifiable_random_effect_structure(tmp_path):
    # given: sleepstudy cut to days 0 and 1, i.e. 36 rows for (Days | Subject)'s 36 random effects
    rows = SLEEPSTUDY.read_text().splitlines()
    two_days = [rows[0]] + [r for r in rows[1:] if r.split(",")[1] in ("0", "1")]
    data = tmp_path / "two_days.csv"
    data.write_text("\n".join(two_days) + "\n")
    # when
    done = run_cli(
        "--data", str(data), "--formula", "Reaction ~ Days", "--groups", "Subject", "--re", "~Days"
    )  # fmt: skip
    # then: exit 1, lme4's reason on one line, no JSON
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: 36 observations are not more than the 36 random effects")
    assert "check.nobs.vs.nRE" in done.stderr
