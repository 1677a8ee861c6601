"""The export's `compliance` table: one row per participant and counted local day, missed days
included, computed from the messages; documented in the codebook."""

from __future__ import annotations

import json

import pytest

from studyplatform.exports.pseudonyms import Pseudonymizer
from studyplatform.participants.services import participant_withdraw
from tests.compliance.conftest import T0, local
from tests.exports.test_export_dataset import build, rows_of, unzip

pytestmark = pytest.mark.django_db


def test_the_compliance_table_has_every_counted_day_with_its_use_and_whether_it_was_met(
    req_study, enroll, chat, owner, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    # given: Ana meets days 0 and 2, misses 1 and 3 (3 minutes on day 3); Bruno never chats;
    # Carla chats, then withdraws asking for deletion
    ana, bruno, carla = (enroll(req_study, now=T0) for _ in range(3))
    chat(ana, local(0, 12), 5)
    chat(ana, local(2, 23, 57), 6)  # a session past midnight counts on day 2
    chat(ana, local(3, 12), 3)
    chat(carla, local(0, 12), 10)
    participant_withdraw(participant=carla, mode="delete", by="participant")
    # when: the table is exported (the study's 4 counted days are long over)
    export = build(req_study, owner, format="jsonl", tables=["compliance"])
    files = unzip(export)
    rows = rows_of("compliance.jsonl", files["compliance.jsonl"])
    # then: four rows each, the days met marked, minutes as the usage features count them
    key = bytes.fromhex(export.key)
    a, b = (Pseudonymizer(key)("participant", p.pk) for p in (ana, bruno))
    got = {(r["participant_id"], r["day"]): r for r in rows}
    assert sorted(got) == sorted([(a, d) for d in range(4)] + [(b, d) for d in range(4)])
    assert [got[(a, d)]["period_met"] for d in range(4)] == [True, False, True, False]
    assert [round(got[(a, d)]["active_minutes"], 2) for d in range(4)] == [5.03, 0, 6.03, 3.03]
    # messages count on the day they were sent: 4 of the late session fall on day 3
    assert [got[(a, d)]["messages"] for d in range(4)] == [6, 0, 3, 8]
    assert {got[(b, d)]["period_met"] for d in range(4)} == {False}
    assert all("date" not in r for r in rows)
    # and the codebook documents every column
    codebook = json.loads(files["codebook.json"])["tables"]["compliance"]
    assert [c["name"] for c in codebook["columns"]] == [
        "participant_id",
        "day",
        "period",
        "active_minutes",
        "messages",
        "period_met",
    ]
    assert "never text" in codebook["consent_basis"]
