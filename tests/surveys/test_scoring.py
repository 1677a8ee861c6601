"""Scoring of shipped and custom instruments against the published rules (surveys.scoring).

Each table row is an answer set whose expected total follows from the cited publication; rows sit
on both sides of every band boundary.
"""

import pytest

from surveys.instruments import load_instrument_dict
from surveys.scoring import AnswerError, score_answers

# Kroenke, Spitzer & Williams 2001: 0-4 minimal, 5-9 mild, 10-14 moderate, 15-19 moderately
# severe, 20-27 severe. Item 9 kept at 0 so the safety flag does not interfere.
PHQ9_TABLE = [
    ([0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "minimal"),
    ([1, 1, 1, 1, 0, 0, 0, 0, 0], 4, "minimal"),
    ([1, 1, 1, 1, 1, 0, 0, 0, 0], 5, "mild"),
    ([1, 1, 1, 1, 1, 1, 1, 2, 0], 9, "mild"),
    ([2, 2, 1, 1, 1, 1, 1, 1, 0], 10, "moderate"),
    ([2, 2, 2, 2, 2, 2, 1, 1, 0], 14, "moderate"),
    ([2, 2, 2, 2, 2, 2, 2, 1, 0], 15, "moderately_severe"),
    ([3, 3, 3, 2, 2, 2, 2, 2, 0], 19, "moderately_severe"),
    ([3, 3, 3, 3, 2, 2, 2, 2, 0], 20, "severe"),
    ([3, 3, 3, 3, 3, 3, 3, 3, 0], 24, "severe"),
]

# Spitzer et al. 2006: 0-4 minimal, 5-9 mild, 10-14 moderate, 15-21 severe.
GAD7_TABLE = [
    ([0, 0, 0, 0, 0, 0, 0], 0, "minimal"),
    ([1, 1, 1, 1, 0, 0, 0], 4, "minimal"),
    ([1, 1, 1, 1, 1, 0, 0], 5, "mild"),
    ([2, 2, 2, 1, 1, 1, 0], 9, "mild"),
    ([2, 2, 2, 2, 1, 1, 0], 10, "moderate"),
    ([2, 2, 2, 2, 2, 2, 2], 14, "moderate"),
    ([3, 2, 2, 2, 2, 2, 2], 15, "severe"),
    ([3, 3, 3, 3, 3, 3, 3], 21, "severe"),
]

# Topp et al. 2015: percentage = raw x 4; <= 28 likely depression, <= 50 poor well-being.
WHO5_TABLE = [
    ([0, 0, 0, 0, 0], 0, 0, "likely_depression"),
    ([2, 2, 1, 1, 1], 7, 28, "likely_depression"),
    ([2, 2, 2, 1, 1], 8, 32, "poor_wellbeing"),
    ([3, 3, 2, 2, 2], 12, 48, "poor_wellbeing"),
    ([3, 3, 3, 2, 2], 13, 52, "above_cutoff"),
    ([5, 5, 5, 5, 5], 25, 100, "above_cutoff"),
]

# Diener et al. 1985 scoring; seven interpretation bands (20 = neutral).
SWLS_TABLE = [
    ([1, 1, 1, 1, 1], 5, "extremely_dissatisfied"),
    ([2, 2, 2, 2, 1], 9, "extremely_dissatisfied"),
    ([2, 2, 2, 2, 2], 10, "dissatisfied"),
    ([3, 3, 3, 3, 2], 14, "dissatisfied"),
    ([3, 3, 3, 3, 3], 15, "slightly_dissatisfied"),
    ([4, 4, 4, 4, 3], 19, "slightly_dissatisfied"),
    ([4, 4, 4, 4, 4], 20, "neutral"),
    ([5, 4, 4, 4, 4], 21, "slightly_satisfied"),
    ([5, 5, 5, 5, 5], 25, "slightly_satisfied"),
    ([6, 5, 5, 5, 5], 26, "satisfied"),
    ([6, 6, 6, 6, 6], 30, "satisfied"),
    ([7, 6, 6, 6, 6], 31, "extremely_satisfied"),
    ([7, 7, 7, 7, 7], 35, "extremely_satisfied"),
]

# Hughes et al. 2004: three items 1-3 summed, 3-9; no bands shipped.
UCLA3_TABLE = [([1, 1, 1], 3), ([2, 2, 1], 5), ([2, 2, 2], 6), ([3, 3, 3], 9)]

# Lubben et al. 2006: total 0-30 (< 12 at risk), family = items 1-3, friends = items 4-6.
LSNS6_TABLE = [
    ([0, 0, 0, 0, 0, 0], 0, 0, 0, "at_risk_of_isolation"),
    ([2, 2, 2, 2, 2, 1], 11, 6, 5, "at_risk_of_isolation"),
    ([2, 2, 2, 2, 2, 2], 12, 6, 6, "not_at_risk"),
    ([5, 5, 5, 0, 0, 0], 15, 15, 0, "not_at_risk"),
    ([5, 5, 5, 5, 5, 5], 30, 15, 15, "not_at_risk"),
]


@pytest.mark.parametrize(("answers", "total", "band"), PHQ9_TABLE)
def test_phq9_total_and_band_follow_kroenke_2001(answers, total, band):
    result = score_answers("phq9", answers)
    assert result.scores == {"total": total}
    assert result.bands == {"total": band}
    assert result.flags == []
    assert result.valid


@pytest.mark.parametrize(("answers", "total", "band"), GAD7_TABLE)
def test_gad7_total_and_band_follow_spitzer_2006(answers, total, band):
    result = score_answers("gad7", answers)
    assert (result.scores, result.bands) == ({"total": total}, {"total": band})


@pytest.mark.parametrize(("answers", "raw", "percentage", "band"), WHO5_TABLE)
def test_who5_raw_percentage_and_band_follow_topp_2015(answers, raw, percentage, band):
    result = score_answers("who5", answers)
    assert result.scores == {"raw": raw, "percentage": percentage}
    assert result.bands == {"percentage": band}


@pytest.mark.parametrize(("answers", "total", "band"), SWLS_TABLE)
def test_swls_total_and_band(answers, total, band):
    result = score_answers("swls", answers)
    assert (result.scores, result.bands) == ({"total": total}, {"total": band})


@pytest.mark.parametrize(("answers", "total"), UCLA3_TABLE)
def test_ucla3_total_follows_hughes_2004_without_bands(answers, total):
    result = score_answers("ucla3", answers)
    assert (result.scores, result.bands) == ({"total": total}, {})


@pytest.mark.parametrize(("answers", "total", "family", "friends", "band"), LSNS6_TABLE)
def test_lsns6_total_subscales_and_isolation_cutoff_follow_lubben_2006(
    answers, total, family, friends, band
):
    result = score_answers("lsns6", answers)
    assert result.scores == {"total": total, "family": family, "friends": friends}
    assert result.bands == {"total": band}


@pytest.mark.parametrize(
    ("key", "answer", "expected"),
    [
        ("ema_mood", 0, {"mood": 0}),
        ("ema_mood", 10, {"mood": 10}),
        ("ema_energy", 3, {"energy": 3}),
        ("ema_loneliness", 1, {"loneliness": 1}),
        ("ema_loneliness", 7, {"loneliness": 7}),
    ],
)
def test_ema_single_items_score_as_their_answer(key, answer, expected):
    assert score_answers(key, [answer]).scores == expected


def test_answers_may_be_given_as_a_mapping_by_item_id():
    answers = {f"gad7_{n}": 1 for n in range(1, 8)}
    assert score_answers("gad7", answers).scores == {"total": 7}


def test_integral_floats_from_json_clients_are_accepted_and_stay_integers():
    result = score_answers("phq9", [2.0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert result.scores["total"] == 2
    assert isinstance(result.scores["total"], int)


# ---- safety and attention flags


def test_phq9_item9_above_zero_raises_the_safety_flag():
    result = score_answers("phq9", [0, 0, 0, 0, 0, 0, 0, 0, 1])
    assert result.flags == ["safety:self_harm"]
    assert result.bands == {"total": "minimal"}


def test_phq9_item9_at_zero_raises_no_flag():
    assert score_answers("phq9", [3, 3, 3, 3, 3, 3, 3, 3, 0]).flags == []


def test_phq9_safety_flag_is_raised_even_when_the_total_is_invalid():
    # A missing item elsewhere must not hide a positive answer to item 9.
    result = score_answers("phq9", [None, 0, 0, 0, 0, 0, 0, 0, 2])
    assert result.scores == {"total": None}
    assert result.flags == ["safety:self_harm"]


def test_a_failed_attention_check_is_flagged(definition):
    instrument = load_instrument_dict(definition)
    result = score_answers(
        instrument, {"q1": 1, "q2": 1, "q3": 1, "q4": 1, "attn": "blue", "stress": 10}
    )
    assert result.flags == ["attention_check_failed:attn"]


def test_a_passed_attention_check_is_not_flagged(definition):
    instrument = load_instrument_dict(definition)
    result = score_answers(
        instrument, {"q1": 1, "q2": 1, "q3": 1, "q4": 1, "attn": "red", "stress": 10}
    )
    assert result.flags == []


def test_a_skipped_attention_check_counts_as_failed(definition):
    instrument = load_instrument_dict(definition)
    result = score_answers(instrument, {"q1": 1, "q2": 1, "q3": 1, "q4": 1, "stress": 10})
    assert result.flags == ["attention_check_failed:attn"]


def test_flags_can_fire_on_items_and_on_scores(definition):
    instrument = load_instrument_dict(definition)
    result = score_answers(
        instrument, {"q1": 1, "q2": 1, "q3": 1, "q4": 1, "attn": "red", "hours": 4.5, "stress": 80}
    )
    assert result.flags == ["high_stress", "sleep:short"]


# ---- reverse scoring (LSNS-6 and UCLA-3 have none, so a custom instrument tests the mechanism)


def test_reverse_scored_items_are_mirrored_within_their_options(definition):
    instrument = load_instrument_dict(definition)
    low = score_answers(
        instrument, {"q1": 1, "q2": 1, "q3": 1, "q4": 1, "attn": "red", "stress": 0}
    )
    high = score_answers(
        instrument, {"q1": 1, "q2": 4, "q3": 1, "q4": 1, "attn": "red", "stress": 0}
    )
    # q2 answered 1 scores 4, answered 4 scores 1
    assert low.scores["total"] == 1 + 4 + 1 + 1
    assert high.scores["total"] == 1 + 1 + 1 + 1
    assert low.scores["first_pair_mean"] == 2.5


def test_reverse_scoring_mirrors_a_slider_within_its_range(definition):
    definition["items"][6]["reverse_scored"] = True
    instrument = load_instrument_dict(definition)
    result = score_answers(
        instrument, {"q1": 1, "q2": 1, "q3": 1, "q4": 1, "attn": "red", "stress": 15}
    )
    assert result.scores["stress"] == 85


# ---- missing-item rules


def test_a_missing_item_makes_an_all_required_score_invalid():
    result = score_answers("phq9", [1, 1, None, 1, 1, 1, 1, 1, 0])
    assert result.scores == {"total": None}
    assert result.bands == {"total": None}
    assert result.missing_items == ["phq9_3"]
    assert not result.valid


def test_who5_with_a_missing_item_has_no_raw_or_percentage_score():
    result = score_answers("who5", {"who5_1": 3, "who5_2": 3, "who5_3": 3, "who5_4": 3})
    assert result.scores == {"raw": None, "percentage": None}
    assert result.missing_items == ["who5_5"]


def test_a_missing_lsns6_family_item_leaves_the_friends_subscale_intact():
    result = score_answers("lsns6", [None, 2, 2, 3, 3, 3])
    assert result.scores == {"total": None, "family": None, "friends": 9}
    assert not result.valid


def test_prorating_rescales_the_answered_items_and_rounds_half_up(definition):
    instrument = load_instrument_dict(definition)
    # q1=3, q2=1 (reversed to 4), q3 missing, q4=2: (3+4+2) x 4/3 = 12
    result = score_answers(instrument, {"q1": 3, "q2": 1, "q4": 2, "attn": "red", "stress": 0})
    assert result.scores["total"] == 12
    assert result.bands["total"] == "high"
    assert result.prorated == ["total"]
    assert result.missing_items == ["q3", "hours", "apps", "comment"]
    assert result.valid


def test_prorating_stops_beyond_max_missing(definition):
    instrument = load_instrument_dict(definition)
    result = score_answers(instrument, {"q1": 3, "q2": 1, "attn": "red", "stress": 0})
    assert result.scores["total"] is None
    assert result.scores["first_pair_mean"] == 3.5
    assert not result.valid


def test_a_prorated_mean_rounds_half_up_not_to_even(definition):
    definition["scores"][1]["missing"]["round"] = 0
    instrument = load_instrument_dict(definition)
    # q1=2, q2=2 reversed to 3: mean 2.5 rounds to 3 (Python's round() would give 2)
    result = score_answers(
        instrument, {"q1": 2, "q2": 2, "q3": 1, "q4": 1, "attn": "red", "stress": 0}
    )
    assert result.scores["first_pair_mean"] == 3


def test_unscored_optional_items_do_not_affect_validity(definition):
    instrument = load_instrument_dict(definition)
    result = score_answers(
        instrument,
        {"q1": 1, "q2": 1, "q3": 1, "q4": 1, "attn": "red", "stress": 0, "comment": "   "},
    )
    assert result.valid
    assert "comment" in result.missing_items


# ---- invalid answers: exact messages


@pytest.mark.parametrize(
    ("key", "answers", "message"),
    [
        (
            "phq9",
            [0, 0, 0, 0, 0, 0, 0, 0, 4],
            "phq9_9: 4 is not one of the allowed values [0, 1, 2, 3]",
        ),
        (
            "phq9",
            [-1, 0, 0, 0, 0, 0, 0, 0, 0],
            "phq9_1: -1 is not one of the allowed values [0, 1, 2, 3]",
        ),
        (
            "phq9",
            [1.5, 0, 0, 0, 0, 0, 0, 0, 0],
            "phq9_1: 1.5 is not one of the allowed values [0, 1, 2, 3]",
        ),
        (
            "phq9",
            ["2", 0, 0, 0, 0, 0, 0, 0, 0],
            "phq9_1: expected one of [0, 1, 2, 3], got text '2'",
        ),
        (
            "phq9",
            [True, 0, 0, 0, 0, 0, 0, 0, 0],
            "phq9_1: expected one of [0, 1, 2, 3], got boolean true",
        ),
        ("phq9", [[1], 0, 0, 0, 0, 0, 0, 0, 0], "phq9_1: expected one of [0, 1, 2, 3], got a list"),
        ("who5", [6, 0, 0, 0, 0], "who5_1: 6 is not one of the allowed values [5, 4, 3, 2, 1, 0]"),
        ("ucla3", [0, 1, 1], "ucla3_1: 0 is not one of the allowed values [1, 2, 3]"),
        ("ema_mood", [11], "mood: 11 is above the maximum 10"),
        ("ema_mood", [-1], "mood: -1 is below the minimum 0"),
        ("ema_mood", [5.5], "mood: 5.5 is not on a step of 1 from 0"),
        ("ema_energy", ["7"], "energy: expected a number, got text '7'"),
        ("phq9", [0, 0], "answers: expected 9 answers in item order, got 2"),
        ("gad7", {"gad7_8": 1}, "gad7_8: unknown item"),
    ],
)
def test_invalid_answers_are_rejected_naming_the_item(key, answers, message):
    with pytest.raises(AnswerError) as exc_info:
        score_answers(key, answers)
    assert str(exc_info.value) == message


def test_every_invalid_answer_is_reported_at_once():
    with pytest.raises(AnswerError) as exc_info:
        score_answers("gad7", [9, 0, 0, 0, 0, 0, "x"])
    assert exc_info.value.errors == {
        "gad7_1": "9 is not one of the allowed values [0, 1, 2, 3]",
        "gad7_7": "expected one of [0, 1, 2, 3], got text 'x'",
    }


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"apps": "claude"}, "apps: expected a list of choices, got text 'claude'"),
        (
            {"apps": ["gpt"]},
            "apps: 'gpt' is not one of the allowed values ['chatgpt', 'claude', 'other']",
        ),
        ({"apps": ["claude", "claude"]}, "apps: a choice is selected twice"),
        ({"comment": "x" * 21}, "comment: text is longer than 20 characters"),
        ({"comment": 5}, "comment: expected text, got 5"),
        ({"hours": 24.5}, "hours: 24.5 is above the maximum 24"),
        ({"hours": 7.25}, "hours: 7.25 is not on a step of 0.5 from 0"),
        ({"stress": 52}, "stress: 52 is not on a step of 5 from 0"),
        ({"attn": "green"}, "attn: 'green' is not one of the allowed values ['blue', 'red']"),
    ],
)
def test_invalid_answers_to_custom_item_types_name_the_item(definition, answer, message):
    instrument = load_instrument_dict(definition)
    with pytest.raises(AnswerError) as exc_info:
        score_answers(instrument, answer)
    assert str(exc_info.value) == message


def test_the_result_records_instrument_key_and_version():
    result = score_answers("who5", [1, 1, 1, 1, 1])
    assert (result.instrument, result.version) == ("who5", "1998")
    assert result.to_dict()["scores"] == {"raw": 5, "percentage": 20}
