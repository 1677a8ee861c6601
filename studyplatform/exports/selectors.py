"""Reads of dataset exports for the researcher API and the console."""

from __future__ import annotations

from django.db.models import QuerySet

from studyplatform.studies.models import Study

from .models import DatasetExport


def exports_for_study(study: Study) -> QuerySet[DatasetExport]:
    """A study's exports, newest first, with who created each (the API's rows and downloads)."""
    return DatasetExport.objects.filter(study=study).select_related("study", "created_by")


def export_summaries_for_study(study: Study) -> QuerySet[DatasetExport]:
    """A study's exports, newest first, for a list."""
    # The wrapped key is never shown in a list.
    return (
        DatasetExport.objects.filter(study=study)
        .select_related("created_by")
        .defer("key")
        .order_by("-created_at", "-id")
    )
