"""Researcher API for analysis runs: start one, poll its status, read results and the report."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.core.csp import set_self_contained_policy
from studyplatform.core.negotiation import FileDownloadNegotiation
from studyplatform.core.schema import error
from studyplatform.studies.permissions import get_study_for
from studyplatform.studies.roles import Perm

from .models import AnalysisRun
from .selectors import analysis_runs_for_study
from .services import LookNotAllowed, analysis_run_create


def _row(run: AnalysisRun, *, results: bool = False) -> dict[str, Any]:
    row = {
        "id": run.id,
        "status": run.status,
        "progress": run.progress,
        "step": run.step,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "created_by": run.created_by.get_username() if run.created_by else None,
        "protocol_version": run.protocol_version.number,
        "data_hash": run.data_hash,
        "code_version": run.code_version,
        "params": run.params,
        "look": run.look,
        "error": run.error,
        # How many times a worker claimed the run (more than 1: a worker died and it was retried).
        "attempts": run.attempts,
        "report_url": reverse(
            "analysis_api:analysis-run-report", kwargs={"slug": run.study.slug, "run_id": run.id}
        )
        if run.status == AnalysisRun.Status.DONE
        else None,
    }
    if results:
        row["results"] = run.results
    return row


class StartSerializer(serializers.Serializer):
    text_markers = serializers.BooleanField(required=False, default=False)
    include_pilot = serializers.BooleanField(required=False)
    # Default: final once the study is closed, interim before (analysis_look_default).
    look = serializers.ChoiceField(choices=AnalysisRun.Look.choices, required=False)


class AnalysisRunSerializer(serializers.Serializer):
    """The run row `_row` builds (documentation of the response; the view serialises by hand)."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=AnalysisRun.Status.choices)
    progress = serializers.IntegerField()
    step = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    created_by = serializers.CharField(allow_null=True)
    protocol_version = serializers.IntegerField()
    data_hash = serializers.CharField(allow_blank=True)
    code_version = serializers.CharField(allow_blank=True)
    params = serializers.DictField()
    look = serializers.ChoiceField(choices=AnalysisRun.Look.choices)
    error = serializers.CharField(allow_blank=True)
    attempts = serializers.IntegerField()
    report_url = serializers.CharField(allow_null=True, help_text="Set once the run is done.")


class AnalysisRunDetailSerializer(AnalysisRunSerializer):
    results = serializers.JSONField(help_text="The plan's model results (null until done).")


_RUN_EXAMPLE = OpenApiExample(
    "A finished run",
    value={
        "id": 3,
        "status": "done",
        "progress": 100,
        "step": "report",
        "created_at": "2026-12-01T10:00:00+00:00",
        "started_at": "2026-12-01T10:00:02+00:00",
        "finished_at": "2026-12-01T10:01:15+00:00",
        "created_by": "olivia",
        "protocol_version": 2,
        "data_hash": "5be1c3a0d7f24e6b",
        "code_version": "1.4.0",
        "params": {"text_markers": False},
        "look": "interim",
        "error": "",
        "attempts": 1,
        "report_url": "/api/studies/companion-rct/analysis-runs/3/report/",
    },
    response_only=True,
)


class AnalysisRunListView(APIView):
    @extend_schema(responses=AnalysisRunSerializer(many=True), examples=[_RUN_EXAMPLE])
    def get(self, request, slug):
        # Results show arm effects, so reading them needs the same role as running them.
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        return Response([_row(r) for r in analysis_runs_for_study(study)])

    @extend_schema(
        request=StartSerializer,
        responses={201: AnalysisRunSerializer},
        examples=[_RUN_EXAMPLE],
    )
    def post(self, request, slug):
        """Start a run of the current protocol's analysis plan; it runs on the analysis queue."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        form = StartSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        params = dict(form.validated_data)
        look = params.pop("look", None)
        try:
            run = analysis_run_create(
                study=study, created_by=request.user, params=params, look=look
            )
        except LookNotAllowed as exc:
            return Response({"look": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        run = analysis_runs_for_study(study).get(id=run.id)
        return Response(_row(run), status=status.HTTP_201_CREATED)


class AnalysisRunDetailView(APIView):
    @extend_schema(responses=AnalysisRunDetailSerializer)
    def get(self, request, slug, run_id):
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        return Response(
            _row(get_object_or_404(analysis_runs_for_study(study), id=run_id), results=True)
        )


class AnalysisRunReportView(APIView):
    # Its file (or CSV) is built here; Accept naming that type must not be a 406.
    content_negotiation_class = FileDownloadNegotiation

    @extend_schema(
        responses={
            (200, "text/html"): OpenApiResponse(
                OpenApiTypes.STR, description="A self-contained HTML document."
            ),
            409: error("The run is not done yet."),
        }
    )
    def get(self, request, slug, run_id):
        """The self-contained HTML report (409 until the run is done)."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        run = get_object_or_404(analysis_runs_for_study(study), id=run_id)
        if run.status != AnalysisRun.Status.DONE:
            return Response(
                {"detail": f"The report is not ready (run is {run.status})."},
                status=status.HTTP_409_CONFLICT,
            )
        response = HttpResponse(run.report_html, content_type="text/html; charset=utf-8")
        # Self-contained: its inline stylesheet (by hash) and data: figures, no scripts.
        return set_self_contained_policy(response, run.report_html)
