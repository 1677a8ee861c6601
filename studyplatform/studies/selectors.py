"""Read queries for studies."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from studyplatform.core.digests import token_digest

from .models import ConsentDocument, ProtocolVersion, Study, StudyInvitation


def studies_visible_to(user) -> QuerySet[Study]:
    qs = Study.objects.select_related("current_version").order_by("-created_at")
    if user.is_superuser:
        return qs
    return qs.filter(memberships__user=user).distinct()


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
    return docs.get(language) or docs.get("en") or next(iter(docs.values()), None)


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
