"""Reads for classification runs and labels."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from studyplatform.studies.models import Study

from .models import ClassificationRun, CodingSample


def classification_runs_for_study(study: Study) -> QuerySet[ClassificationRun]:
    return ClassificationRun.objects.filter(study=study).select_related(
        "study", "created_by", "protocol_version"
    )


def coding_samples_for_study(study: Study, *, coder) -> QuerySet[CodingSample]:
    """The study's coding samples, newest first, each with ``n_items`` (units left after any
    deletions) and ``coded_by_me`` (how many of them ``coder`` has coded)."""
    return (
        CodingSample.objects.filter(study=study)
        .select_related("created_by")
        .annotate(
            n_items=Count("items", distinct=True),
            coded_by_me=Count("items__human_labels", filter=Q(items__human_labels__coder=coder)),
        )
        .order_by("-created_at", "-id")
    )
