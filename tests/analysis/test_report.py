"""The analysis report: every supplement section for a simulated study, escaping of hostile
names, the dose-response rule (no bin of people who had not started), sensitivity analyses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.plan import run_plan
from analysis.report import render_report
from analysis.supplement import usage_window_observed
from studyplatform.core.html_text import escape_html

PLAN = {
    "outcomes": ["who5.percentage"],
    "predictors": ["messages_sent"],
    "covariates": [],
    "random_effects": "~1",
    "arm_by_time": True,
}
ENROLLED = pd.Timestamp("2026-01-10T02:00:00Z")  # 9 January, 23:00 in São Paulo


def cohort(n: int = 30, waves: int = 5, seed: int = 4, outcome: str = "who5.percentage"):
    """Participants (enrolled 10 Jan 02:00 UTC, São Paulo) and a linked table: a baseline whose
    7-day window lies before enrolment, with no usage (0 as the old linking wrote it), then
    weekly occasions with 5-40 messages per window."""
    rng = np.random.default_rng(seed)
    participants = pd.DataFrame(
        {
            "participant": [f"p{i:02d}" for i in range(n)],
            "enrolled_at": ENROLLED,
            "timezone": "America/Sao_Paulo",
            "arm": ["legacy" if i % 2 else "current" for i in range(n)],
        }
    )
    pid = np.repeat(np.arange(n), waves)
    wave = np.tile(np.arange(waves), n).astype(float)
    submitted = pd.Timestamp("2026-01-09") + pd.to_timedelta(7 * wave, unit="D")
    linked = pd.DataFrame(
        {
            "participant": participants["participant"].to_numpy()[pid],
            "arm": participants["arm"].to_numpy()[pid],
            "wave": wave,
            "submitted_at": submitted.tz_localize("UTC"),
            "start": submitted - pd.Timedelta(days=7),
        }
    )
    usage = rng.integers(5, 40, size=len(linked)).astype(float)
    linked["messages_sent"] = np.where(wave == 0, 0.0, usage)
    mean = linked.groupby("participant")["messages_sent"].transform("mean")
    linked["messages_sent_between"] = mean
    linked["messages_sent_within"] = linked["messages_sent"] - mean
    linked[outcome] = (
        50 + rng.normal(0, 8, n)[pid] + 0.3 * linked["messages_sent"] + rng.normal(0, 4, len(pid))
    )
    return participants, linked


def with_lags(linked: pd.DataFrame, outcome: str = "who5.percentage") -> pd.DataFrame:
    """The columns the linking step adds for the lagged (primary) model: the occasion index and
    ``<c>_lag`` (previous occasion) of usage, the window flag and the outcome."""
    linked = linked.assign(occasion=linked["wave"], window_before_enrollment=linked["wave"] == 0)
    for column in ("messages_sent", "window_before_enrollment", outcome):
        linked[f"{column}_lag"] = linked.groupby("participant")[column].shift(1)
    return linked


def test_no_dose_bin_includes_rows_without_a_usage_window():
    # given: every baseline window starts before enrolment (usage 0 there, by the old rule)
    participants, linked = cohort()
    linked["usage_window_observed"] = usage_window_observed(linked, participants)
    # then: enrolment is 9 January in São Paulo, so windows from 9 January on are observed
    assert not linked.loc[linked["wave"] == 0, "usage_window_observed"].any()
    assert linked.loc[linked["wave"] > 0, "usage_window_observed"].all()
    # when
    results = run_plan(linked, PLAN)
    dose = results["outcomes"]["who5.percentage"]["dose_response"]
    # then: no bin holds a baseline row: the lowest usage any bin covers is a follow-up's
    # (participant means over follow-ups are >= 5; with the baselines they would be lower)
    assert min(b["usage_low"] for b in dose["bins"]) >= 5
    assert sum(b["n"] for b in dose["bins"]) == 30
    assert dose["n_excluded"] == 30 and dose["n_rows"] == 120
    assert "before the participant enrolled" in dose["rule"]
    # and the report states the rule under the table
    html = render_report(results, {"linked": linked}, {"title": "T", "study": "s"})
    note = html.split('data-note="dose_response:who5.percentage">', 1)[1].split("</p>", 1)[0]
    assert "Only occasions with an observed usage window are binned" in note
    assert "Rows left out: 30." in note


def test_a_window_starting_on_the_local_enrolment_day_is_observed():
    participants, linked = cohort(n=2, waves=2)
    linked["start"] = pd.to_datetime(["2026-01-08", "2026-01-09", "2026-01-09", "2026-01-10"])
    observed = usage_window_observed(linked, participants)
    # 02:00 UTC on 10 January is still 9 January in São Paulo
    assert observed.tolist() == [False, True, True, True]


def test_hostile_outcome_arm_and_analysis_names_are_escaped():
    # given: names a study designer typed, with markup in them
    hostile = '<img src=x onerror="alert(1)">.total'
    participants, linked = cohort(outcome=hostile)
    linked = with_lags(linked, hostile)
    linked["arm"] = linked["arm"].map({"legacy": "<b>legacy</b>", "current": "current"})
    linked["usage_window_observed"] = usage_window_observed(linked, participants)
    results = run_plan(linked, {**PLAN, "outcomes": [hostile]})
    results["sensitivity"] = [
        {
            "key": "x",
            "name": "<script>alert('s')</script>",
            "description": "<i>d</i>",
            "outcomes": {hostile: {"term": "t", "error": "<u>bad</u>"}},
            "note": "",
        }
    ]
    results["table1"] = {
        "groups": ["<b>legacy</b>", "All"],
        "rows": [
            {"section": "<s>", "label": "<em>x</em>", "stat": "count", "values": {"All": {"n": 1}}}
        ],
    }
    # when
    html = render_report(results, {"linked": linked}, {"title": "T", "study": "s"})
    # then: no markup of theirs survives, and their text is there escaped
    for raw in (hostile, "<b>legacy</b>", "<script>", "<i>d</i>", "<u>bad</u>", "<em>x</em>"):
        assert raw not in html
    assert escape_html(hostile) in html
    primary = results["primary"]["model"]
    assert f'data-table="{primary}:{escape_html(hostile)}"' in html
    # (the lagged model reached the formula parser: it had every column it needs)
    assert "formula" in results["outcomes"][hostile][primary]["error"]
    # (the formula parser refuses such a column name: the refusal is shown, escaped)
    assert "not fitted: ~1: formula &#x27;&lt;img src=x" in html
    assert escape_html("<script>alert('s')</script>") in html
    # when: a plain outcome, but the hostile arm name in fitted models' tables and figures
    linked = linked.rename(
        columns={hostile: "who5.percentage", f"{hostile}_lag": "who5.percentage_lag"}
    )
    html = render_report(run_plan(linked, PLAN), {"linked": linked}, {"title": "T", "study": "s"})
    assert "<b>legacy</b>" not in html
    assert "<td>&lt;b&gt;legacy&lt;/b&gt;</td>" in html  # a row of the model-based means


def test_sensitivity_analyses_render_as_one_table_and_their_absence_is_said():
    _, linked = cohort()
    results = run_plan(linked, PLAN)
    html = render_report(results, {}, {"title": "T", "study": "s"})
    assert '<p data-table="sensitivity">No sensitivity analyses in these results.</p>' in html
    # given: two analyses in ana-sens's shape, one of which failed for the outcome
    results["sensitivity"] = [
        {
            "key": "no_baseline",
            "name": "Excluding the baseline",
            "description": "Baseline occasions removed.",
            "outcomes": {
                "who5.percentage": {
                    "term": "messages_sent_within",
                    "estimate": 0.31,
                    "se": 0.05,
                    "ci_low": 0.21,
                    "ci_high": 0.41,
                    "p": 1e-6,
                    "n_obs": 120,
                    "n_groups": 30,
                }
            },
            "note": "",
        },
        {
            "key": "mnar",
            "name": "MNAR delta 0.5 SD",
            "description": "Delta-adjusted MI.",
            "outcomes": {"who5.percentage": {"term": "messages_sent_within", "error": "too few"}},
            "note": "m = 20",
        },
    ]
    # when
    html = render_report(results, {}, {"title": "T", "study": "s"})
    # then: one table, a row per analysis and outcome, the failure said in its row
    table = html.split('<table data-table="sensitivity">', 1)[1].split("</table>", 1)[0]
    assert html.count('data-table="sensitivity"') == 1
    assert (
        "<td>Excluding the baseline</td><td>who5.percentage</td><td>messages_sent_within</td>"
        "<td>0.310</td><td>0.050</td><td>0.210</td><td>0.410</td><td>1.00e-06</td>"
        "<td>120</td><td>30</td>" in table
    )
    assert "<td>MNAR delta 0.5 SD</td>" in table and "not computed: too few" in table
    assert "Delta-adjusted MI. m = 20" in html


def test_the_arm_contrast_replaces_the_fallback_means_table_and_the_look_is_stated():
    _, linked = cohort()
    results = run_plan(linked, PLAN)
    own = results["outcomes"]["who5.percentage"]["arm_time_model"]["trajectories"]
    assert {m["arm"] for m in own} == {"current", "legacy"} and len(own) == 10
    contrast = results["arm_contrast"]["who5.percentage"]
    assert "error" not in contrast and contrast["means"]
    results["look"] = {"kind": "interim", "number": 3, "previous_looks": 2}
    html = render_report(results, {}, {"title": "T", "study": "s"})
    # the arm analysis's own tables, once; the fallback means table is not repeated
    assert html.count('data-table="arm_contrast:who5.percentage:means"') == 1
    assert html.count('data-table="arm_contrast:who5.percentage"') == 1
    assert 'data-table="model_means:who5.percentage"' not in html
    assert 'data-figure="model_trajectories:who5.percentage"' in html
    assert "Interim look (look 3): 2 earlier completed analysis runs" in html


def test_without_an_arm_contrast_the_model_based_means_come_from_the_arm_time_model():
    _, linked = cohort()
    results = run_plan(linked, PLAN)
    results.pop("arm_contrast", None)
    html = render_report(results, {}, {"title": "T", "study": "s"})
    table = html.split('<table data-table="model_means:who5.percentage">', 1)[1]
    assert "<td>current</td>" in table and "<td>legacy</td>" in table


@pytest.mark.django_db
def test_a_report_from_a_simulated_study_has_every_supplement_section(simulated_study):
    from analysis.services import analysis_run_create, analysis_run_execute

    # when: the study's analysis runs end to end
    run = analysis_run_execute(run=analysis_run_create(study=simulated_study, enqueue=False))
    assert run.status == "done", run.error
    results, html = run.results, run.report_html
    json.dumps(results, allow_nan=False)
    # then: Table 1 by arm, with baseline outcome, usage and completion rows
    table1 = results["table1"]
    assert table1["groups"] == ["current", "legacy", "All"]
    sections = {row["section"] for row in table1["rows"]}
    assert {"Participants", "Usage (whole follow-up)", "Surveys"} <= sections
    assert table1["rows"][0]["values"]["All"]["n"] == 60
    # and per model: R², standardised effects, variance CIs containing the estimates,
    # diagnostics and the rows left out (offered = used + left out)
    primary, term = results["primary"]["model"], results["primary"]["term"]
    assert (primary, term) == ("lagged_model", "messages_sent_lag_within")
    for outcome in results["plan"]["outcomes"]:
        for key in (primary, "association_model", "arm_time_model", "null_model"):
            model = results["outcomes"][outcome][key]
            assert 0 <= model["r2"]["marginal"] <= model["r2"]["conditional"] <= 1
            for sd in model["variance_ci"]["sd"].values():
                assert sd["ci_low"] <= sd["estimate"] <= sd["ci_high"]
            excluded = sum(r["n"] for r in model["exclusions"]["reasons"])
            assert model["exclusions"]["n_input"] == model["exclusions"]["n_used"] + excluded
            assert model["exclusions"]["n_used"] == model["n_obs"]
            assert model["diagnostics"]["n_obs"] == model["n_obs"]
        usage = results["outcomes"][outcome][primary]
        assert usage["standardised"][term]["scale"] == "within-person SDs"
        association = results["outcomes"][outcome]["association_model"]
        assert association["standardised"]["messages_sent_within"]["scale"] == "within-person SDs"
        # the usage models are offered every linked row; the baseline (usage window before
        # enrolment; for the lagged model also no previous occasion) is left out
        assert usage["exclusions"]["n_input"] == results["data"]["n_rows"]
        assert usage["exclusions"]["reasons"]
        means = results["outcomes"][outcome]["arm_time_model"]["trajectories"]
        assert {m["arm"] for m in means} == {"current", "legacy"}
        # and the report shows each of them
        for marker in (
            f'data-table="{primary}:{outcome}"',
            f'data-table="association_model:{outcome}"',
            f'data-table="variance_ci:{primary}:{outcome}"',
            f'data-r2="{primary}:{outcome}"',
            # model-based means per arm and wave: the arm contrast's table (cLDA by default)
            f'data-table="arm_contrast:{outcome}:means"',
            f'data-table="dose_response:{outcome}"',
            f'data-figure="diagnostics:{primary}:{outcome}"',
            f'data-figure="diagnostics:arm_time_model:{outcome}"',
            f'data-figure="model_trajectories:{outcome}"',
        ):
            assert marker in html, marker
        r2 = usage["r2"]["marginal"]
        assert f"marginal {r2:.3f}" in html
    for marker in ('data-table="table1"', 'data-table="exclusions"', 'id="sensitivity"'):
        assert marker in html
    # the primary (lagged) model's tests are cluster-robust, and the report says so
    from analysis.plan import ROBUST_P_METHOD

    assert results["primary"]["p_method"] == ROBUST_P_METHOD
    assert f'data-p-method="{escape_html(ROBUST_P_METHOD)}"' in html
    assert "CR2 cluster-robust standard errors clustered by participant" in html
    assert "<th>standardised (scale)</th>" in html


def test_rows_left_out_are_counted_once_under_their_first_reason():
    # given: 30 people x 5 occasions; usage missing at baseline (window before enrolment), so the
    # lagged usage is missing at baseline (no previous occasion) and at wave 1 (the previous
    # window precedes enrolment); the previous outcome missing at wave 2 for everyone; 7
    # outcomes missing
    _, linked = cohort()
    linked.loc[linked["wave"] == 0, ["messages_sent", "messages_sent_within"]] = np.nan
    linked.loc[linked.index[[6, 7, 11, 12, 16, 21, 26]], "who5.percentage"] = np.nan
    linked = with_lags(linked)
    linked.loc[linked["wave"] == 2, "who5.percentage_lag"] = np.nan
    plan = {**PLAN, "arm_by_time": False}
    # when
    results = run_plan(linked, plan)
    model = results["outcomes"]["who5.percentage"][results["primary"]["model"]]
    # then: baselines and wave 1 count as "no usage window" (baselines not as "no previous
    # occasion"), the wave-2 rows as lag, and each missing outcome once, whatever else its row
    # misses
    reasons = {r["reason"]: r["n"] for r in model["exclusions"]["reasons"]}
    # missing outcomes at p1 w1-2, p2 w1-2, p3-p5 w1 (none at baseline); usage: 30 baselines
    # and the 25 other wave-1 rows; lag: the 28 other wave-2 rows plus p1 w3 and p2 w3 (their
    # previous outcome is missing)
    assert reasons == {
        "missing outcome": 7,
        "no usage window (before enrolment) or usage undefined": 55,
        "no previous occasion (lagged term)": 30,
    }
    assert model["exclusions"]["n_input"] == 150
    assert model["exclusions"]["n_used"] == model["n_obs"] == 58
    # and the same-period model loses only the missing outcomes and the baselines
    association = results["outcomes"]["who5.percentage"]["association_model"]
    reasons = {r["reason"]: r["n"] for r in association["exclusions"]["reasons"]}
    assert reasons == {
        "missing outcome": 7,
        "no usage window (before enrolment) or usage undefined": 30,
    }
    assert association["exclusions"]["n_used"] == association["n_obs"] == 113
    html = render_report(results, {}, {"title": "T", "study": "s"})
    row = html.split('data-table="exclusions">', 1)[1].split("</table>", 1)[0]
    caption = escape_html(model["label"])
    assert (
        f"<td>who5.percentage</td><td>{caption}</td><td>150</td><td>58</td><td>7</td>"
        "<td>55</td><td>30</td>" in row
    )


def test_refits_inside_without_model_supplement_carry_no_extras():
    from analysis.supplement import without_model_supplement

    linked = with_lags(cohort()[1])
    key = run_plan(linked, PLAN)["primary"]["model"]
    with without_model_supplement():
        bare = run_plan(linked, PLAN)["outcomes"]["who5.percentage"][key]
    full = run_plan(linked, PLAN)["outcomes"]["who5.percentage"][key]
    assert "variance_ci" not in bare and "r2" not in bare and "exclusions" not in bare
    assert "variance_ci" in full and "r2" in full and "exclusions" in full
    assert bare["fixed"] and bare["fixed"] == full["fixed"]


def test_the_within_person_figure_draws_only_observed_usage_windows():
    from analysis.report import within_figure_rows

    participants, linked = cohort()
    linked["usage_window_observed"] = usage_window_observed(linked, participants)
    linked.loc[6, "messages_sent"] = np.nan  # p01 at wave 1: a follow-up without usage
    rows = within_figure_rows(linked, "messages_sent", "who5.percentage")
    # no baseline (window before enrolment, usage 0 by the old linking), no missing usage
    assert len(rows) == 119
    assert (linked.loc[rows.index, "wave"] > 0).all()
    assert rows["messages_sent"].min() >= 5
