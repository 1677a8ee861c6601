"""Read queries for participants (researcher side)."""

from __future__ import annotations

from django.db.models import Max, OuterRef, QuerySet, Subquery

from .models import ConsentRecord, FunnelCount, Participant


def participants_for_study(study, *, status: str = "", pilot: str = "", arm: str = "") -> QuerySet:
    latest_consent = ConsentRecord.objects.filter(participant=OuterRef("pk")).order_by("-signed_at")
    qs = (
        Participant.objects.filter(study=study)
        .select_related("allocation__arm")
        .annotate(consent_version=Subquery(latest_consent.values("version")[:1]))
        .order_by("-enrolled_at")
    )
    if status:
        qs = qs.filter(status=status)
    if pilot in ("0", "1"):
        qs = qs.filter(is_pilot=pilot == "1")
    if arm:
        qs = qs.filter(allocation__arm__key=arm)
    return qs


def funnel_totals(study) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in FunnelCount.objects.filter(study=study).values("stage").annotate(n=Max("count")):
        totals[row["stage"]] = 0
    for stage, count in FunnelCount.objects.filter(study=study).values_list("stage", "count"):
        totals[stage] = totals.get(stage, 0) + count
    return totals
