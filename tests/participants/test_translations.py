"""English and Brazilian Portuguese are both shipped for every participant-facing page."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "locale" / "pt_BR" / "LC_MESSAGES" / "django.po"


def test_every_message_has_a_portuguese_translation():
    text = PO.read_text(encoding="utf-8")
    assert "#, fuzzy" not in text
    entries = re.findall(
        r'^msgid ("(?:.*)"(?:\n".*")*)\n(?:msgid_plural .*\n)?msgstr(?:\[0\])? '
        r'("(?:.*)"(?:\n".*")*)',
        text,
        flags=re.M,
    )
    missing = []
    for raw_id, raw_str in entries:
        msgid = "".join(ast.literal_eval(p) for p in raw_id.split("\n"))
        msgstr = "".join(ast.literal_eval(p) for p in raw_str.split("\n"))
        if msgid and not msgstr:
            missing.append(msgid)
    assert len(entries) > 50 and missing == []


def test_the_compiled_catalogue_is_up_to_date(tmp_path):
    compiled = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "-o", str(compiled), str(PO)], check=True) if _has_msgfmt() else (
        pytest.skip("msgfmt not installed")
    )
    committed = PO.with_suffix(".mo").read_bytes()
    assert compiled.read_bytes() == committed, "run: manage.py compilemessages -l pt_BR"


def _has_msgfmt() -> bool:
    from shutil import which

    return which("msgfmt") is not None


@pytest.mark.django_db
def test_pages_follow_the_browser_language(client, recruiting_study):
    page = client.get(f"/s/{recruiting_study.slug}/", HTTP_ACCEPT_LANGUAGE="pt-BR,pt;q=0.9")
    assert b"Verificar se posso participar" in page.content
    assert b"Estamos estudando como conversar" in page.content  # protocol text in pt-br
    screener = client.get(f"/s/{recruiting_study.slug}/screener/", HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert "Qual é a sua idade?".encode() in screener.content


@pytest.mark.django_db
def test_consent_in_portuguese_records_the_portuguese_document(client, recruiting_study):
    from studyplatform.participants.models import ConsentRecord

    headers = {"HTTP_ACCEPT_LANGUAGE": "pt-BR"}
    client.post(
        f"/s/{recruiting_study.slug}/screener/",
        {"age": "30", "uses_chatbots": "yes", "gender": "woman"},
        **headers,
    )
    page = client.get(f"/s/{recruiting_study.slug}/consent/", **headers)
    assert b"Consentimento para participar" in page.content
    client.post(
        f"/s/{recruiting_study.slug}/consent/",
        {
            "c_agree": "on",
            "c_adult": "on",
            "signature_name": "Ana",
            "email": "a@example.org",
        },
        **headers,
    )
    record = ConsentRecord.objects.get()
    assert record.language == "pt-br" and record.participant.language == "pt-br"
