"""The adversarial cohort generator: its frames are the platform's; its knobs do what they say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.pipeline import analyse
from analysis.simulate import CohortSpec, simulate_cohort
from analysis.stats.mixedlm import fit_mixedlm


def plan_for(spec: CohortSpec) -> dict:
    return {
        "outcomes": [spec.outcome],
        "predictors": ["messages_sent"],
        "window_days": spec.window_days,
    }


def person_means(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.groupby("participant")[column].mean()


def test_its_frames_have_the_columns_load_study_frames_gives():
    # when
    frames = simulate_cohort(CohortSpec(participants=12), seed=1).frames
    # then: the columns analysis.data.load_study_frames builds, with UTC times
    assert list(frames.participants.columns) == [
        "participant",
        "timezone",
        "enrolled_at",
        "language",
        "arm",
        "status",
    ]
    assert list(frames.messages.columns) == [
        "participant",
        "conversation",
        "role",
        "created_at",
        "latency_ms",
        "imported",
        "text",
    ]
    assert list(frames.invitations.columns) == [
        "participant",
        "entry",
        "occurrence",
        "entry_wave",
        "status",
        "opens_at",
        "completed_at",
        "wave",
    ]
    assert list(frames.responses.columns) == [
        "participant",
        "entry",
        "occurrence",
        "opens_at",
        "submitted_at",
        "instrument",
        "scores",
        "wave",
    ]
    for frame, column in [
        (frames.participants, "enrolled_at"),
        (frames.messages, "created_at"),
        (frames.responses, "submitted_at"),
    ]:
        assert str(frame[column].dt.tz) == "UTC"
    # and every user message has its assistant reply, none before the participant enrolled
    roles = frames.messages["role"].value_counts()
    assert roles["user"] == roles["assistant"] > 0
    enrolled = frames.messages["participant"].map(
        frames.participants.set_index("participant")["enrolled_at"]
    )
    assert (frames.messages["created_at"] > enrolled).all()
    # and WHO-5 scores are what the instrument allows
    pct = frames.responses["scores"].map(lambda s: s["percentage"])
    assert pct.between(0, 100).all() and (pct % 4 == 0).all()


def test_the_truth_window_is_the_window_the_features_cut():
    # given a cohort in a zone whose clocks go forward during the study (29 March 2026)
    spec = CohortSpec(participants=30, timezone="Europe/London", start="2026-03-16", late=0.3)
    cohort = simulate_cohort(spec, seed=2)
    # when the pipeline links usage to the surveys
    linked = analyse(cohort.frames, plan_for(spec)).linked
    # then the messages it counts in each follow-up's window are the generator's own count
    observed = cohort.occasions[cohort.occasions["observed"]].reset_index(drop=True)
    linked = linked.sort_values(["participant", "submitted_at"]).reset_index(drop=True)
    assert len(linked) == len(observed)
    follow_up = (observed["k"] > 0).to_numpy()
    assert np.array_equal(
        linked["messages_sent"].to_numpy()[follow_up],
        observed["window_usage"].to_numpy()[follow_up],
    )
    # and the baseline's window, which starts before enrolment, is the same count or missing
    base = linked["messages_sent"].to_numpy()[~follow_up]
    truth = observed["window_usage"].to_numpy()[~follow_up]
    assert ((base == truth) | np.isnan(base)).all()


def test_a_baseline_shift_lowers_only_the_baseline_outcome():
    # given two cohorts from the same draws, one with the baseline 8 points lower
    plain = simulate_cohort(CohortSpec(participants=300), seed=3).occasions
    shifted = simulate_cohort(CohortSpec(participants=300, baseline_shift=8.0), seed=3).occasions
    # then baseline wellbeing is 8 points lower and the follow-ups are unchanged
    baseline = plain["k"] == 0
    diff = shifted["wellbeing"] - plain["wellbeing"]
    assert np.allclose(diff[baseline], -8.0)
    assert np.allclose(diff[~baseline], 0.0)


def test_novelty_makes_use_decline_after_the_first_weeks():
    # when
    flat = simulate_cohort(CohortSpec(participants=200), seed=4).usage
    novel = simulate_cohort(CohortSpec(participants=200, novelty=1.5), seed=4).usage

    # then: with novelty the first week has far more use than weeks 4-5 (the expected
    # multipliers are 2.1 and 1.1); without it about the same
    def ratio(usage: np.ndarray) -> float:
        return usage[:, :7].sum() / usage[:, 28:35].sum()

    assert ratio(novel) > 1.6
    assert 0.7 < ratio(flat) < 1.3


def test_informative_dropout_removes_people_about_to_feel_worse():
    # given a cohort where leaving depends on the wellbeing one would report next
    spec = CohortSpec(participants=400, dropout=0.15, dropout_informative=1.5)
    occasions = simulate_cohort(spec, seed=5).occasions
    # then the occasions lost to dropout had lower wellbeing than those still answered
    lost = occasions[~occasions["stays"]]["wellbeing"].mean()
    kept = occasions[occasions["stays"] & (occasions["k"] > 0)]["wellbeing"].mean()
    assert lost < kept - 5
    # and without the informative part the difference disappears
    random = simulate_cohort(spec.with_(dropout_informative=0.0), seed=5).occasions
    lost = random[~random["stays"]]["wellbeing"].mean()
    kept = random[random["stays"] & (random["k"] > 0)]["wellbeing"].mean()
    assert abs(lost - kept) < 2.5
    # and people who left stop chatting
    assert occasions["stays"].sum() < len(occasions)


def test_reverse_causation_makes_low_mood_weeks_busy_weeks():
    # given mood driving use and no effect of use on wellbeing
    spec = CohortSpec(participants=300, reverse=0.8)
    occasions = simulate_cohort(spec, seed=6).occasions
    plain = simulate_cohort(spec.with_(reverse=0.0), seed=6).occasions

    def within_corr(o: pd.DataFrame) -> float:
        o = o[o["k"] > 0]
        centred = o[["window_usage", "wellbeing"]] - o.groupby("participant")[
            ["window_usage", "wellbeing"]
        ].transform("mean")
        return float(centred["window_usage"].corr(centred["wellbeing"]))

    # then weeks with more use are weeks of lower wellbeing, within person
    assert within_corr(occasions) < -0.1
    assert abs(within_corr(plain)) < 0.05


def test_confounding_makes_heavy_users_the_less_well_ones():
    spec = CohortSpec(participants=400, confounding=0.6)
    occasions = simulate_cohort(spec, seed=7).occasions
    plain = simulate_cohort(spec.with_(confounding=0.0), seed=7).occasions
    corr = person_means(occasions, "window_usage").corr(person_means(occasions, "wellbeing"))
    corr0 = person_means(plain, "window_usage").corr(person_means(plain, "wellbeing"))
    assert corr < -0.25
    assert abs(corr0) < 0.12


def test_late_completion_delays_a_share_of_the_follow_ups():
    spec = CohortSpec(participants=200, late=0.4, late_days=5.0)
    frames = simulate_cohort(spec, seed=8).frames
    done = frames.invitations.dropna(subset=["completed_at"])
    follow_ups = done[done["entry"] != "baseline"]
    delay_days = (follow_ups["completed_at"] - follow_ups["opens_at"]).dt.total_seconds() / 86400
    assert 0.3 < (delay_days > 1).mean() < 0.5
    assert delay_days.max() < 5


def test_a_monthly_schedule_opens_surveys_thirty_days_apart():
    spec = CohortSpec(participants=10, every_days=30, waves=4, window_days=30)
    invitations = simulate_cohort(spec, seed=9).frames.invitations
    one = invitations[invitations["participant"] == "P00000"]
    assert list(one["occurrence"]) == ["enrollment", "d30", "d60", "d90"]
    assert list(one["entry_wave"].iloc[1:]) == [1, 2, 3]


def test_the_planted_lagged_effect_is_what_a_lagged_within_person_model_recovers():
    # given a cohort with a lagged within-person effect of 0.15 points per message
    spec = CohortSpec(participants=400, effect=0.15)
    linked = analyse(simulate_cohort(spec, seed=10).frames, plan_for(spec)).linked
    # when usage before the previous occasion predicts the outcome, adjusting for it
    y = spec.outcome
    data = linked[linked["wave"] >= 2].dropna(subset=[y, f"{y}_lag", "messages_sent_lag"])
    data = data.rename(columns={y: "y", f"{y}_lag": "y_lag"})
    person = data.groupby("participant")["messages_sent_lag"].transform("mean")
    data = data.assign(x_within=data["messages_sent_lag"] - person, x_between=person)
    fit = fit_mixedlm("y ~ x_within + x_between + y_lag + C(wave)", data, "participant", "~1")
    row = fit.to_dict()["fixed"]["x_within"]
    # then its interval holds the truth and excludes 0
    assert row["ci_low"] <= spec.truth() <= row["ci_high"]
    assert row["ci_low"] > 0


def test_phq9_outcomes_are_symptom_totals_and_the_truth_changes_sign():
    spec = CohortSpec(participants=20, instrument="phq9", effect=0.1)
    frames = simulate_cohort(spec, seed=11).frames
    totals = frames.responses["scores"].map(lambda s: s["total"])
    assert spec.outcome == "phq9.total"
    assert totals.between(0, 27).all()
    assert spec.truth() == pytest.approx(-0.027)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instrument": "gad7"}, "instrument must be one of ['phq9', 'who5']"),
        ({"waves": 1}, "waves must be at least 2 (baseline and one follow-up)"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"late": 0.2, "late_days": 9.0}, "late_days must be at least 1 and less than every_days"),
        ({"confounding": 2.0}, "confounding must be between -1 and 1"),
    ],
)
def test_it_refuses_impossible_knobs_naming_them(changes, message):
    with pytest.raises(ValueError) as error:
        CohortSpec(**changes)
    assert str(error.value) == message


def test_the_same_seed_gives_the_same_cohort():
    spec = CohortSpec(participants=15, reverse=0.5, dropout=0.1, dropout_informative=1.0)
    a, b = simulate_cohort(spec, seed=12), simulate_cohort(spec, seed=12)
    pd.testing.assert_frame_equal(a.frames.messages, b.frames.messages)
    pd.testing.assert_frame_equal(a.frames.responses, b.frames.responses)
