"""Read queries for studies."""

from __future__ import annotations

import copy

from django.db.models import QuerySet
from django.utils import timezone

from studyplatform.core.digests import token_digest
from studyplatform.core.i18n import localized

from .models import ConsentDocument, Membership, ProtocolVersion, Study, StudyInvitation
from .roles import Perm, role_allows


def studies_visible_to(user) -> QuerySet[Study]:
    qs = Study.objects.select_related("current_version").order_by("-created_at")
    if user.is_superuser:
        return qs
    return qs.filter(memberships__user=user).distinct()


def study_ids_with_perm(user, perm: Perm) -> set[int] | None:
    """Ids of the studies where `user` holds `perm` (one query); None means every study."""
    if user.is_superuser:
        return None
    rows = Membership.objects.filter(user=user).values_list("study_id", "role")
    return {study_id for study_id, role in rows if role_allows(role, perm)}


def versions_of(study: Study) -> QuerySet[ProtocolVersion]:
    return study.versions.select_related("author").order_by("-number")


def current_consent_documents(study: Study) -> list[ConsentDocument]:
    """The newest consent document per language."""
    latest: dict[str, ConsentDocument] = {}
    for doc in study.consent_documents.order_by("language", "-version"):
        latest.setdefault(doc.language, doc)
    return list(latest.values())


def current_consent_for(study: Study, language: str) -> ConsentDocument | None:
    docs = {d.language: d for d in current_consent_documents(study)}
    return localized(docs, language, default=None)


def invitation_for_token(token: str) -> StudyInvitation | None:
    return (
        StudyInvitation.objects.select_related("study", "invited_by")
        .filter(token_digest=token_digest(token))
        .first()
    )


def pending_invitations(study: Study) -> QuerySet[StudyInvitation]:
    """Invitations that can still be accepted, newest first (expired ones are not shown)."""
    return (
        StudyInvitation.objects.filter(
            study=study, status=StudyInvitation.Status.PENDING, expires_at__gt=timezone.now()
        )
        .select_related("invited_by")
        .order_by("-created_at", "-id")
    )


# Arm model fields of protocols written before model endpoints became platform configuration.
RETIRED_MODEL_FIELDS = ("provider", "base_url", "api_key_env")


def protocol_for_editing(study: Study) -> dict:
    """The current protocol as a researcher edits or downloads it to edit.

    Protocol versions are immutable, so a version saved before model endpoints existed still
    says provider/base_url/api_key_env: that is the record of what governed data collection. For
    editing, each such arm is shown with the endpoint its arm row was migrated to (studies
    migration 0002), so the next saved version is in today's form and validates.
    """
    doc = copy.deepcopy(study.protocol)
    legacy = [
        arm
        for arm in doc.get("arms", [])
        if any(field in (arm.get("model") or {}) for field in RETIRED_MODEL_FIELDS)
    ]
    if not legacy:
        return doc
    endpoints = dict(study.arms.values_list("key", "endpoint"))
    for arm in legacy:
        model = arm["model"]
        for field in RETIRED_MODEL_FIELDS:
            model.pop(field, None)
        arm["model"] = {"endpoint": endpoints.get(arm.get("key"), ""), **model}
    return doc
