"""Reads for classification runs and labels."""

from __future__ import annotations

from django.db.models import QuerySet

from studyplatform.studies.models import Study

from .models import ClassificationRun


def classification_runs_for_study(study: Study) -> QuerySet[ClassificationRun]:
    return ClassificationRun.objects.filter(study=study).select_related(
        "study", "created_by", "protocol_version"
    )
