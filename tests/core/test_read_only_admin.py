"""Research records are read-only in the Django admin: one ReadOnlyAdmin, used by every app."""

from __future__ import annotations

import pytest
from django.contrib import admin

from studyplatform.core.admin import ReadOnlyAdmin

pytestmark = pytest.mark.django_db

# model label -> why nobody edits it by hand
READ_ONLY = {
    "core.auditevent": "the audit log",
    "studies.protocolversion": "versions are immutable",
    "studies.consentdocument": "published consent text is what participants signed",
    "studies.studyinvitation": "invitations are issued through the membership service",
    "participants.consentrecord": "a signed consent",
    "participants.allocation": "the randomization record",
    "participants.funnelcount": "anonymous counters",
    "participants.pilotinvite": "issued through the pilot service",
    "participants.datadownload": "built by the download service",
    "chat.conversation": "chat content is research data",
    "chat.message": "chat content is research data",
    "chat.memorynote": "the participant's own notes",
    "safety.safetyalert": "status changes go through audited services",
    "surveys.schedulecursor": "schedule state belongs to the engine",
    "surveys.invitation": "one invitation per occurrence, made by the engine",
    "surveys.response": "submissions are immutable; corrections are audited",
    "analysis.analysisrun": "created through the API or the CLI",
    "compliance.complianceday": "computed from the messages",
    "compliance.usagenudge": "planned at enrollment, decided by the nudge tick",
}


def test_every_research_record_uses_the_core_read_only_admin():
    registered = {m._meta.label_lower: a for m, a in admin.site._registry.items()}
    not_read_only = sorted(
        label for label in READ_ONLY if not isinstance(registered.get(label), ReadOnlyAdmin)
    )
    assert not_read_only == []


@pytest.mark.parametrize("label", sorted(READ_ONLY))
def test_a_superuser_cannot_add_a_research_record_in_the_admin(label, client, make_user):
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    app, model = label.split(".")
    assert client.get(f"/admin/{app}/{model}/").status_code == 200
    assert client.get(f"/admin/{app}/{model}/add/").status_code == 403
