"""Read queries for studies."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import ConsentDocument, Membership, ProtocolVersion, Study
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
    return docs.get(language) or docs.get("en") or next(iter(docs.values()), None)
