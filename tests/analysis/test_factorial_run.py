"""A run of a factorial study hands the pure analysis the design of its protocol version."""

from __future__ import annotations

import pytest

from analysis.services import _plan_of, analysis_run_create
from studyplatform.studies.services import study_create_from_protocol

pytestmark = pytest.mark.django_db


def test_a_run_plan_carries_the_factor_levels_of_every_arm(rct_doc, owner):
    # given: a 2 x 2 study whose plan asks for the factorial analysis
    template = {k: v for k, v in rct_doc.pop("arms")[0].items() if k not in ("key", "label")}
    rct_doc["factors"] = [
        {"key": "modality", "levels": [{"key": "text"}, {"key": "voice"}]},
        {"key": "task", "levels": [{"key": "open"}, {"key": "personal"}]},
    ]
    rct_doc["arms_from_factors"] = template
    rct_doc["allocation"]["block_sizes"] = [4, 8]
    rct_doc["analysis"]["factorial"] = {"factors": ["modality", "task"], "interaction": True}
    study = study_create_from_protocol(doc=rct_doc, author=owner)
    # when
    plan = _plan_of(analysis_run_create(study=study, enqueue=False))
    # then
    assert plan["factorial"]["factors"] == ["modality", "task"]
    assert plan["factorial"]["interaction"] is True
    assert plan["factorial"]["design"][1] == {"key": "task", "levels": ["open", "personal"]}
    assert plan["factorial"]["arm_levels"] == {
        "text_open": {"modality": "text", "task": "open"},
        "text_personal": {"modality": "text", "task": "personal"},
        "voice_open": {"modality": "voice", "task": "open"},
        "voice_personal": {"modality": "voice", "task": "personal"},
    }
