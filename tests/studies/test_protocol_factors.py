"""Factorial protocols: factors and levels, arms as level combinations, generated arms."""

from __future__ import annotations

import copy

import pytest

from studyplatform.studies.models import Arm
from studyplatform.studies.protocol import ProtocolInvalid, parse_protocol_text, to_yaml
from studyplatform.studies.protocol.factors import analysis_design
from studyplatform.studies.protocol.yaml_lines import path_text
from studyplatform.studies.services import study_create_from_protocol

FACTORS = [
    {
        "key": "tone",
        "label": {"en": "Tone", "pt-br": "Tom"},
        "levels": [
            {
                "key": "neutral",
                "label": {"en": "Neutral", "pt-br": "Neutro"},
                "arm": {"system_prompt": "Keep a neutral, matter-of-fact tone."},
            },
            {
                "key": "warm",
                "label": {"en": "Warm", "pt-br": "Caloroso"},
                "arm": {"system_prompt": "Be warm and personal."},
            },
        ],
    },
    {
        "key": "task",
        "label": {"en": "Task", "pt-br": "Tarefa"},
        "levels": [
            {"key": "open", "label": {"en": "Open-ended", "pt-br": "Aberta"}},
            {
                "key": "personal",
                "label": {"en": "Personal", "pt-br": "Pessoal"},
                "arm": {"parameters": {"temperature": 0.9}},
            },
            {"key": "impersonal", "label": {"en": "Non-personal", "pt-br": "Não pessoal"}},
        ],
    },
]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text(text)
    return [str(e) for e in info.value.errors]


def line_of(text: str, needle: str, after: str | None = None) -> int:
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next(i for i, line in enumerate(lines) if after in line)
    return next(i for i, line in enumerate(lines[start:], start + 1) if needle in line)


@pytest.fixture
def generated_doc(rct_doc) -> dict:
    """The two-arm example turned into a 2 x 3 design whose arms are generated."""
    doc = copy.deepcopy(rct_doc)
    template = {k: v for k, v in doc.pop("arms")[0].items() if k not in ("key", "label")}
    template["system_prompt"] = "You are a friendly assistant."
    doc["factors"] = copy.deepcopy(FACTORS)
    doc["arms_from_factors"] = template
    doc["allocation"]["block_sizes"] = [6, 12]
    return doc


@pytest.fixture
def listed_doc(generated_doc) -> dict:
    """The same design with its six arms written out."""
    return parse_protocol_text(to_yaml(generated_doc))


def test_arms_are_generated_for_every_combination_of_levels(generated_doc):
    # when: the protocol is read
    doc = parse_protocol_text(to_yaml(generated_doc))
    # then: one arm per cell, named by its levels, the generator replaced by the arms it made
    assert "arms_from_factors" not in doc
    assert [a["key"] for a in doc["arms"]] == [
        "neutral_open",
        "neutral_personal",
        "neutral_impersonal",
        "warm_open",
        "warm_personal",
        "warm_impersonal",
    ]
    warm_personal = doc["arms"][4]
    assert warm_personal["levels"] == {"tone": "warm", "task": "personal"}
    assert warm_personal["label"] == {"en": "Warm · Personal", "pt-br": "Caloroso · Pessoal"}
    # the shared prompt first, then each level's fragment in factor order
    assert warm_personal["system_prompt"] == (
        "You are a friendly assistant.\n\nBe warm and personal.\n"
    )
    assert warm_personal["parameters"] == {"temperature": 0.9}
    assert doc["arms"][3]["parameters"] == {"temperature": 0.7, "max_tokens": 1024}
    assert doc["arms"][3]["model"] == generated_doc["arms_from_factors"]["model"]


def test_a_generated_protocol_creates_one_arm_row_per_cell(generated_doc, owner):
    study = study_create_from_protocol(doc=generated_doc, author=owner)
    assert Arm.objects.filter(study=study, is_active=True).count() == 6
    content = study.versions.get().content
    assert len(content["arms"]) == 6 and "arms_from_factors" not in content


def test_the_saved_version_reads_back_as_the_same_document(listed_doc):
    # the written-out arms validate on their own (protocol export, then import)
    assert parse_protocol_text(to_yaml(listed_doc)) == listed_doc


def test_an_unknown_level_is_named_with_its_path_and_line(listed_doc):
    listed_doc["arms"][2]["levels"]["task"] = "gratitude"
    text = to_yaml(listed_doc)
    line = line_of(text, "task: gratitude")
    assert errors_of(text) == [
        "arms[2].levels.task: factor 'task' has no level 'gratitude' "
        f"(levels: open, personal, impersonal) (line {line})"
    ]


def test_an_unknown_factor_is_named_with_its_path_and_line(listed_doc):
    listed_doc["arms"][0]["levels"]["voice"] = "neutral"
    text = to_yaml(listed_doc)
    assert errors_of(text) == [
        "arms[0].levels.voice: no factor 'voice' (factors: tone, task) "
        f"(line {line_of(text, 'voice: neutral')})"
    ]


def test_an_arm_must_name_a_level_of_every_factor(listed_doc):
    del listed_doc["arms"][1]["levels"]["task"]
    del listed_doc["arms"][5]["levels"]
    text = to_yaml(listed_doc)
    assert errors_of(text) == [
        "arms[1].levels: must name a level of every factor; missing: task "
        f"(line {line_of(text, 'levels:', after='key: neutral_personal')})",
        "arms[5]: must name its level of each factor, e.g. levels: {tone: neutral, task: open} "
        f"(line {line_of(text, 'key: warm_impersonal')})",
    ]


def test_two_arms_may_not_be_the_same_combination(listed_doc):
    listed_doc["arms"][5]["levels"] = {"tone": "warm", "task": "personal"}
    text = to_yaml(listed_doc)
    assert errors_of(text) == [
        "arms[5].levels: arm 'warm_personal' (arms[4]) already is tone=warm & task=personal; "
        "every arm must be a different combination "
        f"(line {line_of(text, 'levels:', after='key: warm_impersonal')})"
    ]


def test_every_cell_of_the_design_needs_an_arm(listed_doc):
    del listed_doc["arms"][5]
    listed_doc["allocation"]["block_sizes"] = [5]
    text = to_yaml(listed_doc)
    assert errors_of(text) == [
        "arms: a factorial design needs one arm for every combination of levels (or "
        "arms_from_factors to generate them); missing: tone=warm & task=impersonal "
        f"(line {line_of(text, 'arms:')})"
    ]


def test_levels_without_factors_are_an_error(rct_doc):
    rct_doc["arms"][0]["levels"] = {"tone": "warm"}
    text = to_yaml(rct_doc)
    assert errors_of(text) == [
        "arms[0].levels: names factor levels, but the protocol declares no `factors` "
        f"(line {line_of(text, 'levels:')})"
    ]


def test_a_generator_and_listed_arms_together_are_an_error(generated_doc, rct_doc):
    generated_doc["arms"] = rct_doc["arms"]
    text = to_yaml(generated_doc)
    assert errors_of(text) == [
        "arms_from_factors: generates the arms, so the protocol must not also list arms: "
        "remove `arms`, or remove arms_from_factors and give each listed arm its `levels` "
        f"(line {line_of(text, 'arms_from_factors:')})"
    ]


@pytest.mark.django_db
def test_a_bad_level_setting_is_reported_where_it_is_written(generated_doc):
    # given: one level switches the model to an endpoint nobody registered
    generated_doc["factors"][0]["levels"][1]["arm"]["model"] = {
        "endpoint": "nowhere",
        "name": "x",
    }
    text = to_yaml(generated_doc)
    errors = errors_of(text)
    # then: each of the three arms with that level reports it at the level's own setting
    line = line_of(text, "endpoint: nowhere")
    assert len(errors) == 3
    for error, arm in zip(errors, ("warm_open", "warm_personal", "warm_impersonal"), strict=True):
        assert error.startswith("factors[0].levels[1].arm.model.endpoint: ")
        assert error.endswith(f"(in the generated arm {arm}) (line {line})")


def test_two_factors_may_not_both_decide_one_setting(generated_doc):
    generated_doc["factors"][0]["levels"][0]["arm"]["parameters"] = {"temperature": 0.2}
    text = to_yaml(generated_doc)
    assert errors_of(text) == [
        "factors[1].levels[1].arm.parameters: factor 'tone' already sets parameters; only one "
        "factor may decide an arm setting (system_prompt fragments are the exception: they are "
        f"appended) (line {line_of(text, 'parameters:', after='key: personal')})"
    ]


def test_generated_fields_cannot_be_set_by_hand(generated_doc):
    generated_doc["arms_from_factors"]["key"] = "cell"
    text = to_yaml(generated_doc)
    assert errors_of(text) == [
        "arms_from_factors.key: is generated from the factors' levels; remove key here "
        f"(line {line_of(text, 'key: cell')})"
    ]


def test_duplicate_levels_and_missing_translations_are_named(listed_doc):
    listed_doc["factors"][1]["levels"][2]["key"] = "open"
    listed_doc["factors"][0]["label"] = {"en": "Tone"}
    text = to_yaml(listed_doc)
    errors = errors_of(text)
    line = line_of(text, "label:", after="key: tone")
    assert f"factors[0].label: missing text for: pt-br (line {line})" in errors
    assert any(e.startswith("factors[1].levels[2].key: duplicate key") for e in errors)


def test_a_factor_key_may_not_clash_with_an_exported_column(listed_doc):
    listed_doc["factors"][0]["key"] = "arm"
    for arm in listed_doc["arms"]:
        arm["levels"] = {"arm": arm["levels"]["tone"], "task": arm["levels"]["task"]}
    text = to_yaml(listed_doc)
    assert errors_of(text)[0] == (
        "factors[0].key: 'arm' is already a column of the exported participants table; choose "
        f"another factor key (line {line_of(text, 'key: arm')})"
    )


def test_a_factorial_analysis_names_declared_factors(listed_doc):
    listed_doc["analysis"]["factorial"] = {"factors": ["tone", "voice"], "interaction": True}
    text = to_yaml(listed_doc)
    assert errors_of(text) == [
        "analysis.factorial.factors[1]: no factor 'voice' (tone, task) "
        f"(line {line_of(text, '- voice')})"
    ]


def test_the_analysis_gets_the_design_of_the_saved_version(listed_doc):
    listed_doc["analysis"]["factorial"] = {"factors": ["tone"]}
    design = analysis_design(parse_protocol_text(to_yaml(listed_doc)))
    assert design["factors"] == ["tone"]
    assert design["design"] == [
        {"key": "tone", "levels": ["neutral", "warm"]},
        {"key": "task", "levels": ["open", "personal", "impersonal"]},
    ]
    assert design["arm_levels"]["warm_open"] == {"tone": "warm", "task": "open"}


def test_a_translated_title_needs_every_study_language(rct_doc):
    rct_doc["study"]["title"] = {"en": "Everyday conversations"}
    text = to_yaml(rct_doc)
    assert errors_of(text) == [
        f"study.title: missing text for: pt-br (line {line_of(text, 'title:')})"
    ]


@pytest.mark.parametrize(
    ("place", "needle"),
    [
        (("study", "description"), "description:"),
        (("screener", "eligibility", 0, "message"), "message:"),
        (("screener", "questions", 2, "options", 0, "label"), "value: woman"),
    ],
)
def test_every_translated_participant_text_needs_every_study_language(rct_doc, place, needle):
    # given: a per-language text that gives English only
    target = rct_doc
    for part in place[:-1]:
        target = target[part]
    target[place[-1]] = {"en": "Only in English"}
    text = to_yaml(rct_doc)
    path = path_text(place)
    # then: the place and the missing language are named
    errors = errors_of(text)
    assert len(errors) == 1 and errors[0].startswith(f"{path}: missing text for: pt-br (line ")


def test_a_bad_level_key_is_reported_once_at_the_level(generated_doc):
    generated_doc["factors"][1]["levels"][0]["key"] = "Open"
    text = to_yaml(generated_doc)
    assert errors_of(text) == [
        "factors[1].levels[0].key: must start with a lowercase letter and contain only lowercase "
        f"letters, digits and underscores (at most 40) (line {line_of(text, 'key: Open')})"
    ]


def test_more_combinations_than_a_protocol_may_have_arms_are_refused(generated_doc):
    # given: 2 x 3 x 4 = 24 cells, more than the 20 arms a protocol may have
    generated_doc["factors"].append(
        {"key": "length", "levels": [{"key": f"l{i}"} for i in range(4)]}
    )
    text = to_yaml(generated_doc)
    assert errors_of(text) == [
        "factors: the levels make 24 combinations, and a protocol has at most 20 arms; use fewer "
        f"factors or levels (line {line_of(text, 'factors:')})"
    ]


def test_a_shared_prompt_that_is_not_text_is_named(generated_doc):
    generated_doc["arms_from_factors"]["system_prompt"] = 5
    errors = errors_of(to_yaml(generated_doc))
    assert errors and all(e.startswith("arms_from_factors.system_prompt: ") for e in errors)
