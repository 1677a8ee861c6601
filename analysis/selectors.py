"""Reads of analysis runs for the researcher API and the console, each with the related rows its
page shows fetched in the same query."""

from __future__ import annotations

from django.db.models import QuerySet

from studyplatform.studies.models import Study

from .models import AnalysisRun


def analysis_runs_for_study(study: Study) -> QuerySet[AnalysisRun]:
    """A study's runs, newest first, whole (the API's rows and its results and report)."""
    return AnalysisRun.objects.filter(study=study).select_related(
        "study", "protocol_version", "created_by"
    )


def analysis_run_summaries_for_study(study: Study) -> QuerySet[AnalysisRun]:
    """A study's runs, newest first, for a list."""
    # The report HTML and results can be megabytes; a list never needs them.
    return (
        AnalysisRun.objects.filter(study=study)
        .select_related("created_by", "protocol_version")
        .defer("report_html", "results")
        .order_by("-created_at", "-id")
    )
