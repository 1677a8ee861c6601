"""Researcher API for surveys: invitations (list, detail with timeline, send a reminder now),
responses with scores and item-level answers (audited), and compliance per participant and
per wave. JSON, or CSV with `?download=csv` on the lists."""

from __future__ import annotations

import csv
import datetime as dt
import json
from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.core.audit import audit_record
from studyplatform.core.negotiation import FileDownloadNegotiation
from studyplatform.core.schema import error
from studyplatform.studies.permissions import get_study_for
from studyplatform.studies.roles import Perm

from .models import Invitation
from .models import Response as SurveyResponse
from .selectors import compliance_for_study, invitations_for_study, responses_for_study
from .services import ReminderError, invitation_remind_now

INVITATION_COLUMNS = [
    "id",
    "participant",
    "entry",
    "occurrence",
    "wave",
    "instruments",
    "status",
    "opens_at",
    "closes_at",
    "sent_at",
    "opened_at",
    "started_at",
    "completed_at",
    "expired_at",
    "reminders_sent",
    "protocol_version",
]

RESPONSE_COLUMNS = [
    "id",
    "participant",
    "entry",
    "occurrence",
    "wave",
    "invitation",
    "instrument",
    "instrument_version",
    "submitted_at",
    "valid",
    "scores",
    "bands",
    "flags",
    "supersedes",
    "protocol_version",
]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _invitation_row(inv: Invitation) -> dict[str, Any]:
    return {
        "id": inv.pk,
        "participant": inv.participant.code,
        "entry": inv.entry_key,
        "occurrence": inv.occurrence_key,
        "wave": inv.wave,
        "instruments": list(inv.instruments),
        "status": inv.status,
        "opens_at": _iso(inv.opens_at),
        "closes_at": _iso(inv.closes_at),
        "sent_at": _iso(inv.sent_at),
        "opened_at": _iso(inv.opened_at),
        "started_at": _iso(inv.started_at),
        "completed_at": _iso(inv.completed_at),
        "expired_at": _iso(inv.expired_at),
        "reminders_sent": inv.reminders_sent,
        "protocol_version": inv.protocol_version.number,
    }


def _csv_response(filename: str, columns: list[str], rows: list[dict[str, Any]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.DictWriter(response, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        # Lists and mappings go into one cell as JSON, which analysis tools can parse back.
        writer.writerow(
            {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                for k, v in row.items()
            }
        )
    return response


class SurveyInvitationSerializer(serializers.Serializer):
    """An invitation row as `_invitation_row` builds it (documents the response)."""

    id = serializers.IntegerField()
    participant = serializers.CharField(help_text="The participant's pseudonymous code.")
    entry = serializers.CharField(help_text="The schedule entry's key.")
    occurrence = serializers.CharField()
    wave = serializers.IntegerField(allow_null=True)
    instruments = serializers.ListField(child=serializers.CharField())
    status = serializers.ChoiceField(choices=Invitation.Status.choices)
    opens_at = serializers.DateTimeField()
    closes_at = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    reminders_sent = serializers.IntegerField()
    protocol_version = serializers.IntegerField()


class TimelineEventSerializer(serializers.Serializer):
    event = serializers.CharField()
    at = serializers.DateTimeField()


class SurveyInvitationDetailSerializer(SurveyInvitationSerializer):
    timeline = TimelineEventSerializer(many=True)


class SurveyResponseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    participant = serializers.CharField()
    entry = serializers.CharField()
    occurrence = serializers.CharField()
    wave = serializers.IntegerField(allow_null=True)
    invitation = serializers.IntegerField()
    instrument = serializers.CharField()
    instrument_version = serializers.CharField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    valid = serializers.BooleanField()
    scores = serializers.DictField()
    bands = serializers.DictField()
    flags = serializers.ListField()
    supersedes = serializers.IntegerField(allow_null=True)
    protocol_version = serializers.IntegerField()
    answers = serializers.DictField(help_text="Item id to the answer given.")


class ComplianceCountsSerializer(serializers.Serializer):
    invited = serializers.IntegerField()
    completed = serializers.IntegerField()
    expired = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True, help_text="completed / invited.")


class ParticipantComplianceSerializer(ComplianceCountsSerializer):
    participant = serializers.CharField()


class WaveComplianceSerializer(ComplianceCountsSerializer):
    entry = serializers.CharField()
    wave = serializers.IntegerField(allow_null=True)


class ComplianceSerializer(serializers.Serializer):
    participants = ParticipantComplianceSerializer(many=True)
    waves = WaveComplianceSerializer(many=True)


_CSV = OpenApiResponse(OpenApiTypes.STR, description="With download=csv.")
_DOWNLOAD = OpenApiParameter("download", OpenApiTypes.STR, enum=["csv"])
_INVITATION_EXAMPLE = OpenApiExample(
    "A sent weekly survey",
    value={
        "id": 41,
        "participant": "P7K2M9QX",
        "entry": "weekly",
        "occurrence": "week-2",
        "wave": 2,
        "instruments": ["ucla3", "who5"],
        "status": "sent",
        "opens_at": "2026-11-19T12:00:00+00:00",
        "closes_at": "2026-11-22T12:00:00+00:00",
        "sent_at": "2026-11-19T12:00:04+00:00",
        "opened_at": None,
        "started_at": None,
        "completed_at": None,
        "expired_at": None,
        "reminders_sent": 0,
        "protocol_version": 2,
    },
    response_only=True,
)


class InvitationListView(APIView):
    # Its file (or CSV) is built here; Accept naming that type must not be a 406.
    content_negotiation_class = FileDownloadNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("participant", OpenApiTypes.STR, description="A participant code."),
            OpenApiParameter("status", OpenApiTypes.STR, enum=Invitation.Status.values),
            OpenApiParameter("entry", OpenApiTypes.STR, description="A schedule entry key."),
            OpenApiParameter("wave", OpenApiTypes.INT),
            _DOWNLOAD,
        ],
        responses={
            (200, "application/json"): SurveyInvitationSerializer(many=True),
            (200, "text/csv"): _CSV,
        },
        examples=[_INVITATION_EXAMPLE],
    )
    def get(self, request, slug):
        """Invitations with filters `participant` (code), `status`, `entry`, `wave`;
        `?download=csv` for CSV."""
        study = get_study_for(request.user, slug, Perm.VIEW_PARTICIPANTS)
        params = request.query_params
        rows = [
            _invitation_row(inv)
            for inv in invitations_for_study(
                study,
                participant=params.get("participant", ""),
                status=params.get("status", ""),
                entry=params.get("entry", ""),
                wave=params.get("wave", ""),
            )
        ]
        if params.get("download") == "csv":
            return _csv_response(f"{study.slug}-invitations.csv", INVITATION_COLUMNS, rows)
        return Response(rows)


class InvitationDetailView(APIView):
    @extend_schema(responses=SurveyInvitationDetailSerializer)
    def get(self, request, slug, invitation_id):
        """One invitation with its timeline (scheduled, opens, sent, opened, started,
        completed/expired/cancelled, reminders), oldest first."""
        study = get_study_for(request.user, slug, Perm.VIEW_PARTICIPANTS)
        invitation = get_object_or_404(invitations_for_study(study), pk=invitation_id)
        row = _invitation_row(invitation)
        row["timeline"] = [
            {"event": name, "at": at.isoformat() if isinstance(at, dt.datetime) else at}
            for name, at in invitation.timeline()
        ]
        return Response(row)


class InvitationRemindView(APIView):
    @extend_schema(
        request=None,
        responses={
            200: SurveyInvitationSerializer,
            409: error("The invitation is not open, so no reminder can be sent."),
        },
    )
    def post(self, request, slug, invitation_id):
        """Send a reminder now (open invitations only; audited)."""
        study = get_study_for(request.user, slug, Perm.MANAGE_PARTICIPANTS)
        invitation = get_object_or_404(invitations_for_study(study), pk=invitation_id)
        try:
            invitation = invitation_remind_now(
                study=study, invitation=invitation, actor=request.user
            )
        except ReminderError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        invitation = invitations_for_study(study).get(pk=invitation.pk)
        return Response(_invitation_row(invitation))


def _response_row(r: SurveyResponse) -> dict[str, Any]:
    inv = r.invitation
    return {
        "id": r.pk,
        "participant": r.participant.code,
        "entry": inv.entry_key,
        "occurrence": inv.occurrence_key,
        "wave": inv.wave,
        "invitation": inv.pk,
        "instrument": r.instrument_key,
        "instrument_version": r.instrument_version,
        "submitted_at": _iso(r.submitted_at),
        "valid": r.valid,
        "scores": r.scores,
        "bands": r.bands,
        "flags": r.flags,
        "supersedes": r.supersedes_id,
        "protocol_version": r.protocol_version.number,
        "answers": r.answers,
    }


class ResponseListView(APIView):
    # Its file (or CSV) is built here; Accept naming that type must not be a 406.
    content_negotiation_class = FileDownloadNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("instrument", OpenApiTypes.STR, description="An instrument key."),
            OpenApiParameter("participant", OpenApiTypes.STR, description="A participant code."),
            _DOWNLOAD,
        ],
        responses={
            (200, "application/json"): SurveyResponseSerializer(many=True),
            (200, "text/csv"): _CSV,
        },
    )
    def get(self, request, slug):
        """Current submitted responses with scores, bands, flags and item-level answers;
        filters `instrument`, `participant` (code); `?download=csv` puts each item in its own
        `answer.<item>` column. Reading answers writes an audit event."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        params = request.query_params
        rows = [
            _response_row(r)
            for r in responses_for_study(
                study,
                instrument=params.get("instrument", ""),
                participant=params.get("participant", ""),
            )
        ]
        as_csv = params.get("download") == "csv"
        audit_record(
            actor=request.user,
            action="survey.responses.read",
            study_slug=study.slug,
            data={
                "instrument": params.get("instrument", ""),
                "participant": params.get("participant", ""),
                "rows": len(rows),
                "format": "csv" if as_csv else "json",
            },
        )
        if as_csv:
            item_ids = list(dict.fromkeys(k for row in rows for k in row["answers"]))
            flat = [
                {**row, **{f"answer.{k}": row["answers"].get(k) for k in item_ids}} for row in rows
            ]
            return _csv_response(
                f"{study.slug}-responses.csv",
                RESPONSE_COLUMNS + [f"answer.{k}" for k in item_ids],
                flat,
            )
        return Response(rows)


class ComplianceView(APIView):
    @extend_schema(responses=ComplianceSerializer)
    def get(self, request, slug):
        """Invited / completed / expired counts and completion rate, per participant and per
        schedule entry + wave. `rate` = completed / invited (null when nothing was sent)."""
        study = get_study_for(request.user, slug, Perm.VIEW_PARTICIPANTS)
        return Response(compliance_for_study(study))
