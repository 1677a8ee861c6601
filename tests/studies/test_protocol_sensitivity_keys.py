"""The analysis section accepts the sensitivity-analysis keys (analysis/sensitivity.py)."""

from __future__ import annotations

import pytest

from studyplatform.studies.protocol import ProtocolInvalid, parse_protocol_text, to_yaml


def test_the_mnar_keys_are_accepted(rct_doc):
    rct_doc["analysis"].update(
        {
            "mnar_deltas": [0, 0.25, 0.5, 1],
            "mnar_imputations": 30,
            "mnar_seed": 7,
            "higher_is_better": {"who5.percentage": True, "ucla3.total": False},
        }
    )
    parsed = parse_protocol_text(to_yaml(rct_doc))
    assert parsed["analysis"]["mnar_deltas"] == [0, 0.25, 0.5, 1]
    assert parsed["analysis"]["higher_is_better"] == {
        "who5.percentage": True,
        "ucla3.total": False,
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("mnar_deltas", [-0.5], "analysis.mnar_deltas[0]: must be at least 0"),
        ("mnar_imputations", 1, "analysis.mnar_imputations: must be at least 2"),
        (
            "higher_is_better",
            {"who5.percentage": "yes"},
            "analysis.higher_is_better.who5.percentage: must be true or false",
        ),
    ],
)
def test_a_bad_mnar_value_is_refused_naming_the_field(rct_doc, key, value, message):
    rct_doc["analysis"][key] = value
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text(to_yaml(rct_doc))
    messages = [str(e) for e in info.value.errors]
    # (the line number at the end depends on the example's layout)
    assert len(messages) == 1 and messages[0].startswith(f"{message} (line "), messages
