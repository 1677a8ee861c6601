"""Researcher API for anonymized dataset exports: create, list, detail (status and progress),
and the audited download. Every endpoint needs the export_data permission."""

from __future__ import annotations

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.studies.permissions import get_study_for
from studyplatform.studies.roles import Perm

from .models import DatasetExport
from .services import ExportError, ExportGone, ExportNotReady, export_create, export_download


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
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.EXPORT_DATA)
        exports = DatasetExport.objects.filter(study=study).select_related("created_by")
        return Response([_row(e) for e in exports])

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
    def get(self, request, slug, export_id):
        study = get_study_for(request.user, slug, Perm.EXPORT_DATA)
        export = get_object_or_404(
            DatasetExport.objects.select_related("created_by"), study=study, pk=export_id
        )
        return Response(_row(export))


class ExportDownloadView(APIView):
    def get(self, request, slug, export_id):
        """Stream the zip. Every download writes an audit event (who, when, options, hash)."""
        study = get_study_for(request.user, slug, Perm.EXPORT_DATA)
        export = get_object_or_404(
            DatasetExport.objects.select_related("study"), study=study, pk=export_id
        )
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
