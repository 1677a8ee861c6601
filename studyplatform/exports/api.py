"""Researcher API for anonymized dataset exports: create, list, detail (status and progress),
and the audited download. Every endpoint needs the export_data permission."""

from __future__ import annotations

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.core.negotiation import FileDownloadNegotiation
from studyplatform.core.schema import error
from studyplatform.studies.permissions import get_study_for
from studyplatform.studies.roles import Perm

from . import codebook
from .models import DatasetExport
from .selectors import exports_for_study
from .services import ExportError, ExportGone, ExportNotReady, export_create, export_download
from .services.options import BASE_QUASI_IDENTIFIERS, CHAT_MODES, DATE_MODES
from .writers import FORMAT_LABELS, FORMATS


class ExportOptionsSerializer(serializers.Serializer):
    """The export options (docs/exports.md), every one optional; `export_options_clean` is what
    validates them (this serializer documents the request body)."""

    tables = serializers.ListField(
        child=serializers.ChoiceField(choices=codebook.TABLES), required=False
    )
    format = serializers.ChoiceField(
        choices=[(f, FORMAT_LABELS[f]) for f in FORMATS],
        required=False,
        help_text="File format of the tables (docs/exports.md, 'Statistical packages').",
    )
    dates = serializers.ChoiceField(choices=DATE_MODES, required=False)
    chat_mode = serializers.ChoiceField(choices=CHAT_MODES, required=False)
    include_time_of_day = serializers.BooleanField(required=False)
    k = serializers.IntegerField(required=False, help_text="k-anonymity threshold.")
    quasi_identifiers = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=f"Among {', '.join(BASE_QUASI_IDENTIFIERS)} and the screener's questions.",
    )
    include_pilot = serializers.BooleanField(required=False)
    reuse_key_of = serializers.IntegerField(
        required=False, allow_null=True, help_text="An earlier export whose pseudonyms to reuse."
    )


class ExportSerializer(serializers.Serializer):
    """The export row `_row` builds (documents the response; the view serialises by hand)."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=DatasetExport.Status.choices)
    progress = serializers.IntegerField()
    options = serializers.DictField()
    key_fingerprint = serializers.CharField()
    sha256 = serializers.CharField(allow_blank=True)
    size = serializers.IntegerField(allow_null=True)
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    attempts = serializers.IntegerField()
    detection_counts = serializers.DictField()
    disclosure = serializers.DictField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoked_reason = serializers.CharField(allow_blank=True)
    replaced_by = serializers.IntegerField(allow_null=True)


_EXPORT_EXAMPLE = OpenApiExample(
    "A finished export",
    value={
        "id": 12,
        "status": "done",
        "progress": 100,
        "options": {"tables": ["participants", "responses"], "format": "csv", "k": 5},
        "key_fingerprint": "a41c09e2",
        "sha256": "3c5e8f0a9b1d2e4f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f",
        "size": 48213,
        "created_by": "olivia",
        "created_at": "2026-12-01T11:00:00+00:00",
        "finished_at": "2026-12-01T11:00:09+00:00",
        "expires_at": "2026-12-08T11:00:09+00:00",
        "error": "",
        "attempts": 1,
        "detection_counts": {"email": 2},
        "disclosure": {"k": 5, "suppressed": 0},
        "revoked_at": None,
        "revoked_reason": "",
        "replaced_by": None,
    },
    response_only=True,
)


def _row(export: DatasetExport) -> dict:
    return {
        "id": export.pk,
        "status": export.status,
        "progress": export.progress,
        "options": export.options,
        "key_fingerprint": export.key_fingerprint,
        "sha256": export.sha256,
        "size": export.size,
        "created_by": export.created_by.get_username() if export.created_by else None,
        "created_at": export.created_at.isoformat(),
        "finished_at": export.finished_at.isoformat() if export.finished_at else None,
        "expires_at": export.expires_at.isoformat() if export.expires_at else None,
        "error": export.error,
        # How many times a worker claimed the build (more than 1: a worker died, it was retried).
        "attempts": export.attempts,
        "detection_counts": export.detection_counts,
        "disclosure": export.disclosure,
        # Why a finished export's file was deleted early (a withdrawal; never who), and the
        # export queued in its place.
        "revoked_at": export.revoked_at.isoformat() if export.revoked_at else None,
        "revoked_reason": export.revoked_reason,
        "replaced_by": export.replaced_by_id,
    }


def _options(data) -> dict:
    # JSON bodies arrive as dicts; form bodies as QueryDicts (one value per option).
    return dict(data) if isinstance(data, dict) else data.dict()


class ExportListView(APIView):
    @extend_schema(responses=ExportSerializer(many=True), examples=[_EXPORT_EXAMPLE])
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.EXPORT_DATA)
        return Response([_row(e) for e in exports_for_study(study)])

    @extend_schema(
        request=ExportOptionsSerializer,
        responses={201: ExportSerializer},
        examples=[
            OpenApiExample(
                "CSV of the default tables",
                value={"format": "csv", "dates": "relative", "k": 5},
                request_only=True,
            ),
            _EXPORT_EXAMPLE,
        ],
    )
    def post(self, request, slug):
        """Create an export (options as in docs/exports.md); it is built in the background."""
        study = get_study_for(request.user, slug, Perm.EXPORT_DATA)
        try:
            export = export_create(study=study, user=request.user, options=_options(request.data))
        except ExportError as exc:
            return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
        export.refresh_from_db()
        return Response(_row(export), status=status.HTTP_201_CREATED)


class ExportDetailView(APIView):
    @extend_schema(responses=ExportSerializer, examples=[_EXPORT_EXAMPLE])
    def get(self, request, slug, export_id):
        study = get_study_for(request.user, slug, Perm.EXPORT_DATA)
        export = get_object_or_404(exports_for_study(study), pk=export_id)
        return Response(_row(export))


class ExportDownloadView(APIView):
    # Its file (or CSV) is built here; Accept naming that type must not be a 406.
    content_negotiation_class = FileDownloadNegotiation

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The dataset, codebook and README as a zip."
            ),
            409: error("The export is not built yet (or failed)."),
            410: error("The file expired or was deleted after a withdrawal."),
        }
    )
    def get(self, request, slug, export_id):
        """Stream the zip. Every download writes an audit event (who, when, options, hash)."""
        study = get_study_for(request.user, slug, Perm.EXPORT_DATA)
        export = get_object_or_404(exports_for_study(study), pk=export_id)
        try:
            path = export_download(export=export, actor=request.user, now=timezone.now())
        except ExportGone as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_410_GONE)
        except ExportNotReady as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=f"{study.slug}-export-{export.pk}.zip",
            content_type="application/zip",
        )
