"""Property test: whatever valid answers come in, every score stays inside its declared range."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from surveys_custom_instrument import custom_definition

from surveys.instruments import Instrument, Item, list_instruments, load_instrument_dict
from surveys.scoring import score_answers


def answer_strategy(item: Item) -> st.SearchStrategy:
    if item.type in ("likert", "single_choice"):
        valid = st.sampled_from(item.option_values())
    elif item.type == "multiple_choice":
        valid = st.lists(st.sampled_from(item.option_values()), unique=True)
    elif item.type in ("slider", "number"):
        step = item.step or 1
        count = round((item.max - item.min) / step)
        valid = st.integers(0, count).map(lambda k: item.min + k * step)
    else:
        valid = st.text(max_size=item.max_length or 50)
    return st.one_of(st.none(), valid)


def answers_for(instrument: Instrument) -> st.SearchStrategy:
    return st.tuples(*(answer_strategy(item) for item in instrument.items)).map(list)


INSTRUMENTS = [*list_instruments(), load_instrument_dict(custom_definition())]


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=lambda i: i.key)
def test_scores_always_fall_within_the_declared_range(instrument):
    @settings(max_examples=300, deadline=None)
    @given(answers_for(instrument))
    def check(answers):
        result = score_answers(instrument, answers)
        for score in instrument.scores:
            value = result.scores[score.name]
            if value is None:
                assert result.valid is False
                continue
            assert score.min <= value <= score.max
            if score.bands:
                band = result.bands[score.name]
                assert band in {b.label for b in score.bands}

    check()
