"""Import/export: export(import(file)) is the same document as the file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from studyplatform.studies.models import Arm, ConsentDocument, Study

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["companion-rct", "companion-cohort"])
def test_export_of_an_imported_example_is_the_same_document(name):
    # given: an example imported through the CLI
    path = ROOT / "examples" / f"{name}.yaml"
    out = io.StringIO()
    call_command("protocol", "import", str(path), stdout=out)
    original = yaml.safe_load(path.read_text())
    # when: it is exported
    exported = io.StringIO()
    call_command("protocol", "export", original["study"]["slug"], stdout=exported)
    # then: the YAML parses to the same data, and re-importing it changes nothing
    assert yaml.safe_load(exported.getvalue()) == original
    reimport = ROOT / "var" / f"roundtrip-{name}.yaml"
    reimport.write_text(exported.getvalue())
    try:
        again = io.StringIO()
        call_command("protocol", "import", str(reimport), stdout=again)
    finally:
        reimport.unlink()
    assert "unchanged: version 1" in again.getvalue()


@pytest.mark.django_db
def test_import_materialises_arms_and_consent_documents(study):
    assert study.status == Study.Status.DRAFT
    assert set(Arm.objects.filter(study=study).values_list("key", flat=True)) == {
        "legacy",
        "current",
    }
    legacy = study.arms.get(key="legacy")
    assert legacy.model_name == "gpt-4o-2024-05-13"
    assert legacy.parameters == {"temperature": 0.7, "max_tokens": 1024}
    docs = ConsentDocument.objects.filter(study=study)
    assert sorted(docs.values_list("language", "version")) == [("en", 1), ("pt-br", 1)]
    assert docs.get(language="en").required_keys == ["agree", "adult"]
    assert docs.get(language="en").optional_keys == ["share_chats", "import_history"]
