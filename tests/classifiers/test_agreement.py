"""Agreement statistics (classifiers/agreement.py) against hand-worked and published values."""

from __future__ import annotations

import pytest

from studyplatform.classifiers.agreement import (
    agreement,
    bootstrap_interval,
    cohen_kappa,
    precision_recall_f1,
)

YN = ["yes", "no"]


def pairs(counts: dict[tuple[str, str], int]) -> tuple[list[str], list[str]]:
    a, b = [], []
    for (x, y), n in counts.items():
        a += [x] * n
        b += [y] * n
    return a, b


def test_kappa_matches_the_textbook_two_rater_example():
    # The worked example in Wikipedia's "Cohen's kappa" article (50 grant proposals, two
    # readers): yes/yes 20, yes/no 5, no/yes 10, no/no 15. p_o = 35/50 = 0.7,
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    a, b = pairs({("yes", "yes"): 20, ("yes", "no"): 5, ("no", "yes"): 10, ("no", "no"): 15})
    assert cohen_kappa(a, b, YN) == pytest.approx(0.4)


def test_kappa_matches_scikit_learns_documented_three_level_example():
    # scikit-learn's cohen_kappa_score docstring example gives 0.6875 for these lists; by hand:
    # p_o = 4/5, margins (neg, pos, neu) 2,2,1 and 3,1,1, p_e = (6 + 2 + 1) / 25 = 0.36,
    # kappa = (0.8 - 0.36) / 0.64 = 0.6875.
    y1 = ["negative", "positive", "negative", "neutral", "positive"]
    y2 = ["negative", "positive", "negative", "neutral", "negative"]
    assert cohen_kappa(y1, y2, ["negative", "neutral", "positive"]) == pytest.approx(0.6875)


def test_weighted_kappa_counts_near_misses_as_partial_agreement():
    # Three ordered levels, four units: (0,0), (1,2), (2,2), (0,2).
    # Margins: rater A (0: 2, 1: 1, 2: 1)/4, rater B (0: 1, 1: 0, 2: 3)/4.
    # Linear weights |i-j|/2. Observed disagreement = (0.5 + 1) / 4 = 0.375.
    # Expected = sum_ij w_ij a_i b_j = a0*b2*1 + a1*b0*.5 + a1*b2*.5 + a2*b0*1
    #          = (2*3*1 + 1*1*.5 + 1*3*.5 + 1*1*1) / 16 = 9 / 16 = 0.5625.
    # Linear kappa = 1 - 0.375 / 0.5625 = 1/3.
    # Quadratic weights ((i-j)/2)^2: observed (0.25 + 1) / 4 = 0.3125;
    # expected (6 + .25 + .75 + 1) / 16 = 0.5; kappa = 1 - 0.625 = 0.375.
    levels = ["none", "mild", "strong"]
    a = ["none", "mild", "strong", "none"]
    b = ["none", "strong", "strong", "strong"]
    assert cohen_kappa(a, b, levels, "linear") == pytest.approx(1 / 3)
    assert cohen_kappa(a, b, levels, "quadratic") == pytest.approx(0.375)
    # unweighted: p_o = 2/4, p_e = (2*1 + 1*0 + 1*3) / 16 = 5/16; (0.5 - 0.3125) / 0.6875
    assert cohen_kappa(a, b, levels) == pytest.approx(0.1875 / 0.6875)


def test_kappa_is_undefined_not_invented_when_both_raters_used_one_level():
    assert cohen_kappa(["no"] * 5, ["no"] * 5, YN) is None
    assert cohen_kappa([], [], YN) is None


def test_precision_recall_and_f1_of_the_positive_level():
    # reference yes 25 (20 predicted yes), reference no 25 (10 predicted yes):
    # precision 20/30, recall 20/25, F1 = 2 * (2/3 * 0.8) / (2/3 + 0.8) = 8/11.
    ref, pred = pairs({("yes", "yes"): 20, ("yes", "no"): 5, ("no", "yes"): 10, ("no", "no"): 15})
    figures = precision_recall_f1(ref, pred, YN, positive="yes")
    assert figures["precision"] == pytest.approx(2 / 3)
    assert figures["recall"] == pytest.approx(0.8)
    assert figures["f1"] == pytest.approx(8 / 11)


def test_macro_figures_average_over_the_levels_used():
    # The scikit-learn example lists (reference y1, prediction y2):
    # negative: tp 2, predicted 3, actual 2 -> p 2/3, r 1, f1 0.8
    # neutral:  tp 1, predicted 1, actual 1 -> p 1, r 1, f1 1
    # positive: tp 1, predicted 1, actual 2 -> p 1, r 0.5, f1 2/3
    y1 = ["negative", "positive", "negative", "neutral", "positive"]
    y2 = ["negative", "positive", "negative", "neutral", "negative"]
    figures = precision_recall_f1(y1, y2, ["negative", "neutral", "positive"])
    assert figures["precision"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert figures["recall"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert figures["f1"] == pytest.approx((0.8 + 1 + 2 / 3) / 3)


def test_labels_outside_the_levels_are_refused():
    with pytest.raises(ValueError, match="not among the levels: maybe"):
        cohen_kappa(["yes", "maybe"], ["yes", "no"], YN)
    with pytest.raises(ValueError, match="same length"):
        cohen_kappa(["yes"], ["yes", "no"], YN)


def test_bootstrap_intervals_are_seeded_and_cover_the_estimate():
    ref, pred = pairs({("yes", "yes"): 20, ("yes", "no"): 5, ("no", "yes"): 10, ("no", "no"): 15})
    first = agreement(ref, pred, levels=YN, output_type="binary", seed=7, resamples=400)
    again = agreement(ref, pred, levels=YN, output_type="binary", seed=7, resamples=400)
    other = agreement(ref, pred, levels=YN, output_type="binary", seed=8, resamples=400)
    assert first == again
    assert first.kappa.ci != other.kappa.ci
    assert first.n == 50 and first.percent_agreement == pytest.approx(0.7)
    assert first.kappa.value == pytest.approx(0.4)
    low, high = first.kappa.ci
    # 50 units: the interval is wide but holds the estimate and stays inside [-1, 1]
    assert -1 <= low < 0.4 < high <= 1 and high - low > 0.2
    assert first.f1.value == pytest.approx(8 / 11)
    assert first.averaging == "positive level 'yes'"
    assert first.weighted_kappa == {}


def test_ordinal_agreement_reports_weighted_kappas():
    levels = ["none", "mild", "strong"]
    a = ["none", "mild", "strong", "none"] * 5
    b = ["none", "strong", "strong", "strong"] * 5
    result = agreement(a, b, levels=levels, output_type="ordinal", seed=1, resamples=200)
    assert result.weighted_kappa["linear"].value == pytest.approx(1 / 3)
    assert result.weighted_kappa["quadratic"].value == pytest.approx(0.375)
    assert result.averaging == "macro"


def test_bootstrap_gives_no_interval_when_the_statistic_is_mostly_undefined():
    # every resample of identical single-level labels has an undefined kappa
    assert bootstrap_interval(lambda idx: None, 10, seed=1, resamples=50) is None
    assert bootstrap_interval(lambda idx: 1.0, 1, seed=1, resamples=50) is None
