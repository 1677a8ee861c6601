"""Audit events are append-only; encrypted values round-trip and rotate keys."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from studyplatform.core.audit import audit_record
from studyplatform.core.fields import decrypt_str, encrypt_str
from studyplatform.core.models import AuditEvent


@pytest.mark.django_db
def test_audit_events_cannot_be_edited_or_deleted(owner):
    event = audit_record(actor=owner, action="test.action", data={"a": 1})
    assert event.actor_label == "olivia" and event.actor == owner
    event.action = "rewritten"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    assert AuditEvent.objects.get().action == "test.action"


@pytest.mark.django_db
def test_the_audit_admin_is_read_only(owner, client, make_user):
    admin = make_user("root", is_superuser=True, is_staff=True)
    event = audit_record(actor=owner, action="test.action")
    client.force_login(admin)
    assert client.get("/admin/core/auditevent/").status_code == 200
    assert client.get("/admin/core/auditevent/add/").status_code == 403
    response = client.post(f"/admin/core/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_encrypted_values_do_not_contain_the_plaintext():
    token = encrypt_str("I feel lonely tonight")
    assert "lonely" not in token
    assert decrypt_str(token) == "I feel lonely tonight"


def test_old_keys_still_decrypt_after_rotation(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    token = encrypt_str("secret")
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert decrypt_str(token) == "secret"
    assert Fernet(new.encode()).decrypt(encrypt_str("fresh").encode()) == b"fresh"
