"""The validity benchmark's machinery on a few replicates (the figures come from the real run)."""

from __future__ import annotations

import re
from io import StringIO

import pytest

from tests.support.benchmark_module import benchmark_module


@pytest.fixture(scope="module")
def bench():
    # Registered under its name so worker processes can unpickle the tasks that refer to it.
    with benchmark_module("analysis_validity.py", "analysis_validity") as module:
        yield module


LINE = re.compile(
    r"^scenario=(?P<name>\S+) truth=(?P<truth>\S+) model=(?P<model>\S+) bias=(?P<bias>\S+) "
    r"coverage=(?P<coverage>\S+) rejection=(?P<rejection>\S+) fitted=(?P<n>\d+)/(?P<total>\d+) "
)


def test_it_runs_scenarios_through_the_pipeline_and_prints_the_summary_line(bench):
    # when two scenarios run with 3 replicates on two worker processes
    out = StringIO()
    bench.main(
        [
            "--replicates=3",
            "--participants=30",
            "--jobs=2",
            "--scenarios=basic_null,reverse_effect",
        ],
        out=out,
    )
    lines = out.getvalue().splitlines()
    # then each scenario has its line, every replicate was fitted by the platform's plan
    found = [m.groupdict() for m in map(LINE.match, lines) if m]
    names = [f["name"] for f in found]
    assert set(names) == {"basic_null", "reverse_effect"}
    primary = found[names.index("basic_null")]
    assert (primary["n"], primary["total"]) == ("3", "3")
    assert primary["model"] == "usage_model" or primary["model"].endswith("model")
    assert 0 <= float(primary["coverage"]) <= 1 and 0 <= float(primary["rejection"]) <= 1
    # and the last line is the summary, in exactly this format
    assert re.fullmatch(
        r"scenarios=2 worst_null_rejection=\d\.\d{4} worst_coverage=\d\.\d{4}", lines[-1]
    )
    assert any(line.startswith("# elapsed_s=") for line in lines)


def test_the_truth_of_a_same_period_term_is_zero_and_of_a_lagged_term_the_effect(bench):
    scenario = next(s for s in bench.scenarios(40) if s.name == "basic_effect")
    found = [
        {
            "primary": {
                "model": "usage_model",
                "term": "messages_sent_within",
                "value": {"estimate": 0.02, "se": 0.01, "ci_low": 0.0, "ci_high": 0.04, "p": 0.05},
            },
            "lagged": {
                "model": "lagged_model",
                "term": "messages_sent_lag_within",
                "value": {
                    "estimate": 0.12,
                    "se": 0.01,
                    "ci_low": 0.105,
                    "ci_high": 0.14,
                    "p": 0.01,
                },
            },
        }
    ] * 2
    same = bench.summarise(scenario, found, "primary")
    lagged = bench.summarise(scenario, found, "lagged")
    assert (same.truth, same.estimand, same.coverage) == (0.0, "same-period", 1.0)
    assert same.bias == pytest.approx(0.02)
    assert (lagged.truth, lagged.estimand, lagged.coverage) == (0.1, "lagged", 0.0)
    assert lagged.bias == pytest.approx(0.02)
    assert lagged.rejection == 1.0


def test_an_unknown_scenario_is_refused_by_name(bench):
    with pytest.raises(SystemExit) as error:
        bench.main(["--scenarios=nope"], out=StringIO())
    assert str(error.value).startswith("--scenarios: unknown scenario 'nope' (known: basic_null")


def test_without_extras_the_usage_models_are_the_reports_and_nothing_else_runs():
    from analysis.pipeline import analyse
    from analysis.simulate import CohortSpec, simulate_cohort

    # given one simulated cohort and the benchmark's default plan
    spec = CohortSpec(participants=40, effect=0.1)
    frames = simulate_cohort(spec, seed=11).frames
    plan = {"outcomes": [spec.outcome], "predictors": ["messages_sent"]}
    # when it is analysed as a report and as the benchmark analyses it
    full = analyse(frames, plan).results
    bare = analyse(frames, plan, extras=False).results
    # then the primary and secondary usage models are identical, fit for fit
    for key in ("lagged_model", "association_model"):
        a, b = full["outcomes"][spec.outcome][key], bare["outcomes"][spec.outcome][key]
        assert a["formula"] == b["formula"] and a["re_formula"] == b["re_formula"]
        assert a["fixed"] == b["fixed"]
    assert bare["primary"]["p"] == full["primary"]["p"]
    # and the report's extras were skipped (not computed and dropped: absent)
    assert bare["extras"] is False and "extras" not in full
    assert "sensitivity" in full and "sensitivity" not in bare
    assert "table1" not in bare and "arm_contrast" not in bare
    assert "null_model" not in bare["outcomes"][spec.outcome]
    assert "variance_ci" in full["outcomes"][spec.outcome]["lagged_model"]
    assert "variance_ci" not in bare["outcomes"][spec.outcome]["lagged_model"]


def test_reverse_causation_prints_the_same_period_association_beside_the_lagged_primary(bench):
    # when a reverse-causation scenario runs (the platform's primary is the lagged model)
    out = StringIO()
    bench.main(["--replicates=2", "--participants=30", "--scenarios=reverse_null"], out=out)
    lines = out.getvalue().splitlines()
    found = [(m.groupdict(), line) for line in lines if (m := LINE.match(line))]
    # then the first line is the lagged primary, the second the same-period association
    (primary, _), (same, same_line) = found
    assert primary["model"] == "lagged_model" and "estimand=lagged" in lines[1]
    assert same["model"] == "association_model"
    assert "term=messages_sent_within estimand=same-period" in same_line
    assert same_line.endswith("role=secondary surviving_estimand=lagged")
    # and only the primary is judged in the summary
    assert lines[-1] == f"scenarios=1 worst_null_rejection={float(primary['rejection']):.4f} " + (
        "worst_coverage=nan"
    )


def test_a_scenario_no_model_can_pass_by_design_is_printed_and_judged_apart(bench):
    # when the all-threats scenario (informative dropout with person-varying effects) runs
    # beside an ordinary one
    out = StringIO()
    bench.main(
        ["--replicates=2", "--participants=30", "--scenarios=combined_null,basic_null"], out=out
    )
    lines = out.getvalue().splitlines()
    found: dict[str, tuple[dict[str, str], str]] = {}
    for line in lines:
        if m := LINE.match(line):
            found.setdefault(m["name"], (m.groupdict(), line))  # the first line is the primary
    # then its lagged primary line is printed, saying why and what the estimate still means
    combined, combined_line = found["combined_null"]
    assert combined["model"] == "lagged_model"
    assert combined_line.endswith(
        " by_design=informative_dropout_with_person_varying_effects:estimand=effect_among_stayers"
    )
    assert "by_design" not in found["basic_null"][1]
    # and the summary judges the other scenario, with the by-design figures beside, not hidden
    basic = found["basic_null"][0]
    assert lines[-1] == (
        f"scenarios=2 worst_null_rejection={float(basic['rejection']):.4f} worst_coverage=nan "
        f"by_design=combined_null "
        f"by_design_worst_null_rejection={float(combined['rejection']):.4f} "
        "by_design_worst_coverage=nan"
    )


def test_previous_usage_adjust_reaches_the_plan_and_the_header(bench):
    # the platform's default plan leaves previous_usage out (its default, "ignore")
    assert "previous_usage" not in bench.scenarios(30, names=["basic_effect"])[0].plan()
    adjusted = bench.scenarios(30, names=["basic_effect"], previous_usage="adjust")[0]
    assert adjusted.plan()["previous_usage"] == "adjust"
    # and a run says in its header which it used
    out = StringIO()
    bench.main(
        [
            "--replicates=2",
            "--participants=30",
            "--scenarios=basic_effect",
            "--previous-usage=adjust",
        ],
        out=out,
    )
    assert " previous_usage=adjust " in out.getvalue().splitlines()[0]
