"""Format validation and the shipped-instrument registry (surveys.instruments)."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from surveys.instruments import (
    INSTRUMENTS_DIR,
    SCHEMA_PATH,
    InstrumentFormatError,
    UnknownInstrumentError,
    get_instrument,
    list_instruments,
    load_instrument_dict,
    load_instrument_file,
    validate_instrument_dict,
)
from surveys.scoring import score_answers

SHIPPED = {
    "who5",
    "phq9",
    "gad7",
    "ucla3",
    "swls",
    "lsns6",
    "ema_mood",
    "ema_energy",
    "ema_loneliness",
}


def errors_for(data: dict) -> list[str]:
    with pytest.raises(InstrumentFormatError) as exc_info:
        load_instrument_dict(data)
    return exc_info.value.errors


def test_every_shipped_instrument_is_listed_and_loads():
    # given / when
    keys = {i.key for i in list_instruments()}
    # then
    assert keys == SHIPPED
    assert get_instrument("phq9").item_ids == tuple(f"phq9_{n}" for n in range(1, 10))


def test_every_shipped_file_passes_the_published_json_schema():
    # The schema is a deliverable of its own: other tools may validate with it directly.
    schema = json.loads(SCHEMA_PATH.read_text())
    for path in sorted(Path(INSTRUMENTS_DIR).glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_shipped_instruments_carry_licence_source_and_wording_status(key):
    instrument = get_instrument(key)
    assert instrument.source["citation"]
    assert instrument.licence["note"]
    shipped = set(instrument.licence["wording_shipped"])
    for item in instrument.items:
        assert set(item.text or {}) == shipped
    if set(instrument.languages) - shipped:
        assert instrument.licence["obtain_from"]
    for score in instrument.scores:
        assert score.missing.source


def test_wording_is_withheld_where_the_licence_is_unclear():
    for key in ("ucla3", "lsns6"):
        instrument = get_instrument(key)
        assert instrument.licence["status"] == "unclear"
        assert all(item.text is None for item in instrument.items)


def test_validated_instruments_do_not_ship_an_unverified_pt_br_translation():
    for key in ("who5", "phq9", "gad7", "swls", "ucla3", "lsns6"):
        instrument = get_instrument(key)
        assert "pt-BR" not in instrument.licence["wording_shipped"]
        assert all("pt-BR" not in (item.text or {}) for item in instrument.items)
        assert "pt-BR" not in instrument.definition.get("instructions", {})


def test_ema_items_ship_both_languages():
    for key in ("ema_mood", "ema_energy", "ema_loneliness"):
        item = get_instrument(key).items[0]
        assert set(item.text) == {"en", "pt-BR"}


def test_ucla3_and_lsns6_have_no_reverse_scored_items():
    # Hughes 2004 items are all worded in the lonely direction; LSNS-6 items all count ties.
    for key in ("ucla3", "lsns6"):
        assert not any(item.reverse_scored for item in get_instrument(key).items)


def test_unknown_instrument_key_names_the_known_ones():
    with pytest.raises(UnknownInstrumentError) as exc_info:
        get_instrument("phq8")
    assert str(exc_info.value).startswith("unknown instrument 'phq8' (known: ema_energy,")


def test_a_custom_instrument_with_every_item_type_loads(definition):
    instrument = load_instrument_dict(definition)
    assert [i.type for i in instrument.items] == [
        "likert",
        "likert",
        "likert",
        "likert",
        "single_choice",
        "number",
        "slider",
        "multiple_choice",
        "free_text",
    ]
    # option-set references are resolved in the stored definition
    assert instrument.definition["items"][0]["options"][0]["value"] == 1


def test_an_item_with_one_option_is_rejected_with_its_path(definition):
    definition["items"][2]["options"] = [{"value": 1}]
    assert errors_for(definition) == ["items[2].options: at least two options required"]


def test_an_option_set_with_one_option_is_rejected_with_its_path(definition):
    definition["option_sets"]["agree"] = [{"value": 1}]
    assert errors_for(definition) == ["option_sets.agree: at least two options required"]


def test_a_choice_item_without_options_is_rejected(definition):
    del definition["items"][4]["options"]
    assert errors_for(definition) == ["items[4].options: this field is required"]


def test_an_unknown_item_type_is_rejected(definition):
    definition["items"][1]["type"] = "ranking"
    assert errors_for(definition) == [
        "items[1].type: must be one of: likert, single_choice, multiple_choice, slider, number, "
        "free_text"
    ]


def test_an_unknown_field_is_rejected(definition):
    definition["items"][0]["colour"] = "red"
    assert errors_for(definition) == ["items[0].colour: unknown field"]


def test_an_unsupported_language_is_rejected(definition):
    definition["items"][0]["text"] = {"fr": "Je vais bien"}
    assert errors_for(definition) == ["items[0].text: key 'fr': must be one of: en, pt-BR"]


def test_duplicate_item_ids_are_rejected(definition):
    definition["items"][1]["id"] = "q1"
    errors = errors_for(definition)
    assert errors[0] == "items[1].id: duplicate item id 'q1'"


def test_duplicate_option_values_are_rejected(definition):
    definition["items"][4]["options"] = [{"value": "red"}, {"value": "red"}]
    assert "items[4].options[1].value: duplicate value 'red'" in errors_for(definition)


def test_likert_values_must_be_numbers(definition):
    definition["items"][0]["options"] = [{"value": "a"}, {"value": "b"}]
    assert "items[0].options[0].value: likert values must be numbers" in errors_for(definition)


def test_an_unknown_option_set_is_rejected(definition):
    definition["items"][3]["options"] = "agreement"
    assert errors_for(definition) == ["items[3].options: unknown option set 'agreement'"]


def test_slider_max_must_exceed_min(definition):
    definition["items"][6]["max"] = 0
    assert errors_for(definition) == ["items[6].max: must be greater than min"]


def test_an_attention_check_must_expect_a_valid_answer(definition):
    definition["items"][4]["attention_check"] = {"expected": "green"}
    assert errors_for(definition) == [
        "items[4].attention_check.expected: 'green' is not a valid answer"
    ]


def test_a_score_referencing_an_unknown_item_is_rejected(definition):
    definition["scores"][0]["items"][3] = "q9"
    assert errors_for(definition) == ["scores[0].items[3]: unknown item 'q9'"]


def test_an_attention_check_cannot_be_scored(definition):
    definition["scores"][0]["items"].append("attn")
    assert errors_for(definition) == [
        "scores[0].items[4]: attention-check item 'attn' cannot be scored"
    ]


def test_free_text_cannot_be_scored(definition):
    definition["scores"][2]["items"] = ["comment"]
    assert errors_for(definition) == [
        "scores[2].items[0]: item 'comment' (free_text) has no numeric answers to score"
    ]


def test_a_declared_range_must_match_the_items(definition):
    definition["scores"][0]["range"] = {"min": 0, "max": 16}
    errors = errors_for(definition)
    assert errors[0] == "scores[0].range: declared 0-16 but the items give 4-16"


def test_a_multiplier_is_part_of_the_declared_range():
    data = yaml.safe_load((INSTRUMENTS_DIR / "who5.yaml").read_text())
    data["scores"][1]["range"]["max"] = 25
    errors = errors_for(data)
    assert errors[0] == "scores[1].range: declared 0-25 but the items give 0-100"


def test_bands_must_not_overlap(definition):
    definition["scores"][0]["bands"][1]["min"] = 9
    assert errors_for(definition) == [
        "scores[0].bands[1]: overlaps or is out of order with bands[0]"
    ]


def test_bands_must_reach_the_range_ends(definition):
    definition["scores"][0]["bands"][1]["max"] = 15
    assert errors_for(definition) == ["scores[0].bands[1].max: must equal range max 16"]


def test_bands_must_cover_every_reachable_score(definition):
    definition["scores"][0]["bands"] = [
        {"label": "low", "min": 4, "max": 8},
        {"label": "high", "min": 10, "max": 16},
    ]
    assert errors_for(definition) == ["scores[0].bands: reachable score 9 is in no band"]


def test_prorating_needs_fewer_missing_items_than_scored(definition):
    definition["scores"][1]["missing"]["max_missing"] = 2
    assert errors_for(definition) == [
        "scores[1].missing.max_missing: must be less than the 2 items scored"
    ]


def test_a_flag_must_reference_an_existing_item(definition):
    definition["flags"][1]["item"] = "sleep"
    assert errors_for(definition) == ["flags[1].item: unknown item 'sleep'"]


def test_a_score_needs_items_or_a_subscale_but_not_both(definition):
    definition["scores"][1]["items"] = ["q1"]
    assert errors_for(definition) == ["scores[1]: give exactly one of 'items' or 'subscale'"]


def test_shipped_files_must_carry_provenance(definition):
    # A researcher's custom instrument may omit licence/source; a shipped file may not.
    errors = validate_instrument_dict(definition, require_provenance=True)
    assert "licence: required for shipped instruments" in errors
    assert "scores[0].missing.source: required for shipped instruments" in errors


def test_a_file_whose_key_differs_from_its_name_is_rejected(tmp_path):
    data = yaml.safe_load((INSTRUMENTS_DIR / "gad7.yaml").read_text())
    path = tmp_path / "gad_seven.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(InstrumentFormatError) as exc_info:
        load_instrument_file(path)
    assert str(exc_info.value) == "gad_seven.yaml: key: 'gad7' does not match file name 'gad_seven'"


def test_a_non_mapping_is_rejected():
    assert validate_instrument_dict(["not", "a", "dict"]) == [
        "(root): expected a mapping, got list"
    ]


def test_the_custom_instrument_example_in_the_docs_loads_and_scores():
    # The documented example is what researchers copy, so it must stay valid.
    doc = (Path(__file__).resolve().parents[2] / "docs" / "instruments.md").read_text()
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    instrument = load_instrument_dict(yaml.safe_load(block))
    result = score_answers(
        instrument, {"trust": 3, "distrust": 1, "attn": "red", "hours": 9, "stress": 40}
    )
    assert result.scores == {"trust": 3}
    assert result.flags == ["heavy_use"]
