"""Researcher API for participants: list (JSON or CSV), funnel, pilot invitations, withdrawal on
a participant's request, and the audited identity-vault view."""

from __future__ import annotations

import csv

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import urlencode
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.core.audit import audit_record
from studyplatform.core.negotiation import FileDownloadNegotiation
from studyplatform.core.schema import error
from studyplatform.studies.permissions import get_study_for, has_perm
from studyplatform.studies.roles import Perm

from .models import Participant, PilotInvite
from .selectors import funnel_totals, participants_for_study
from .services import WithdrawalError, identity_view, participant_withdraw, pilot_invite_create

COLUMNS = [
    "code",
    "status",
    "is_pilot",
    "language",
    "timezone",
    "enrolled_at",
    "last_seen_at",
    "consent_version",
    "withdrawn_at",
    "withdrawal_mode",
    "withdrawal_by",
]


def _row(p: Participant, show_arm: bool) -> dict:
    row = {c: getattr(p, c) for c in COLUMNS}
    for key in ("enrolled_at", "last_seen_at", "withdrawn_at"):
        row[key] = row[key].isoformat() if row[key] else None
    if show_arm:
        row["arm"] = p.allocation.arm.key if hasattr(p, "allocation") else None
    return row


class ParticipantRowSerializer(serializers.Serializer):
    """A participant row as `_row` builds it (documents the response)."""

    code = serializers.CharField()
    status = serializers.ChoiceField(choices=Participant.Status.choices)
    is_pilot = serializers.BooleanField()
    language = serializers.CharField()
    timezone = serializers.CharField()
    enrolled_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    consent_version = serializers.IntegerField(allow_null=True)
    withdrawn_at = serializers.DateTimeField(allow_null=True)
    withdrawal_mode = serializers.CharField(allow_blank=True)
    withdrawal_by = serializers.CharField(allow_blank=True)
    arm = serializers.CharField(
        required=False, allow_null=True, help_text="Only for roles allowed to see allocation."
    )


_PARTICIPANT_EXAMPLE = OpenApiExample(
    "An active participant",
    value={
        "code": "P7K2M9QX",
        "status": "active",
        "is_pilot": False,
        "language": "pt-br",
        "timezone": "America/Sao_Paulo",
        "enrolled_at": "2026-11-05T18:22:10+00:00",
        "last_seen_at": "2026-12-01T21:04:55+00:00",
        "consent_version": 1,
        "withdrawn_at": None,
        "withdrawal_mode": "",
        "withdrawal_by": "",
        "arm": "warm",
    },
    response_only=True,
)


class IdentitySerializer(serializers.Serializer):
    code = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    name = serializers.CharField(allow_blank=True)
    panel = serializers.CharField(allow_blank=True)
    panel_id = serializers.CharField(allow_blank=True)


class PilotInviteRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    label = serializers.CharField()
    created_at = serializers.DateTimeField()
    used_by = serializers.CharField(allow_null=True, help_text="The pilot participant's code.")
    revoked = serializers.BooleanField()


class PilotInviteCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    label = serializers.CharField()
    link = serializers.URLField(help_text="Shown once: only a digest of its token is stored.")


class ParticipantListView(APIView):
    # Its file (or CSV) is built here; Accept naming that type must not be a 406.
    content_negotiation_class = FileDownloadNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=Participant.Status.values),
            OpenApiParameter("pilot", OpenApiTypes.STR, enum=["0", "1"]),
            OpenApiParameter("arm", OpenApiTypes.STR, description="An arm key (allocation)."),
            OpenApiParameter("download", OpenApiTypes.STR, enum=["csv"]),
        ],
        responses={
            (200, "application/json"): ParticipantRowSerializer(many=True),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="With download=csv."),
        },
        examples=[_PARTICIPANT_EXAMPLE],
    )
    def get(self, request, slug):
        """Participants with filters `status`, `pilot` (0/1), `arm`; `?download=csv` for CSV.

        The arm column (and the arm filter) appear only for roles allowed to see allocation.
        """
        study = get_study_for(request.user, slug, Perm.VIEW_PARTICIPANTS)
        show_arm = has_perm(request.user, study, Perm.VIEW_ALLOCATION)
        params = request.query_params
        rows = [
            _row(p, show_arm)
            for p in participants_for_study(
                study,
                status=params.get("status", ""),
                pilot=params.get("pilot", ""),
                arm=params.get("arm", "") if show_arm else "",
            )
        ]
        if params.get("download") == "csv":
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = (
                f'attachment; filename="{study.slug}-participants.csv"'
            )
            writer = csv.DictWriter(response, fieldnames=COLUMNS + (["arm"] if show_arm else []))
            writer.writeheader()
            writer.writerows(rows)
            return response
        return Response(rows)


class FunnelView(APIView):
    @extend_schema(
        responses=OpenApiResponse(
            {"type": "object", "additionalProperties": {"type": "integer"}},
            description="People counted at each enrollment stage (visited, screened, ...).",
        )
    )
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.VIEW_PARTICIPANTS)
        return Response(funnel_totals(study))


class WithdrawSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=Participant.Withdrawal.values)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class ParticipantWithdrawView(APIView):
    @extend_schema(
        request=WithdrawSerializer,
        responses={200: ParticipantRowSerializer, 409: error("Already withdrawn.")},
    )
    def post(self, request, slug, code):
        """Withdraw a participant on their request (audited; cannot be undone)."""
        study = get_study_for(request.user, slug, Perm.MANAGE_PARTICIPANTS)
        participant = get_object_or_404(Participant, study=study, code=code)
        ser = WithdrawSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            participant = participant_withdraw(
                participant=participant,
                mode=ser.validated_data["mode"],
                by="researcher",
                actor=request.user,
                reason=ser.validated_data["reason"],
            )
        except WithdrawalError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        participant = participants_for_study(study).get(pk=participant.pk)
        return Response(_row(participant, has_perm(request.user, study, Perm.VIEW_ALLOCATION)))


class IdentityView(APIView):
    @extend_schema(responses=IdentitySerializer)
    def get(self, request, slug, code):
        """The participant's vault row. Every read writes an audit event."""
        study = get_study_for(request.user, slug, Perm.VIEW_IDENTITY)
        participant = get_object_or_404(Participant, study=study, code=code)
        identity = identity_view(participant=participant, actor=request.user)
        if identity is None:
            return Response(
                {"detail": "No identity is held (deleted at withdrawal)."},
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(
            {
                "code": participant.code,
                "email": identity.email,
                "name": identity.name,
                "panel": identity.panel,
                "panel_id": identity.panel_pid,
            }
        )


class PilotInviteSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=100)


class PilotInviteListView(APIView):
    @extend_schema(responses=PilotInviteRowSerializer(many=True))
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.MANAGE_PARTICIPANTS)
        return Response(
            [
                {
                    "id": i.pk,
                    "label": i.label,
                    "created_at": i.created_at.isoformat(),
                    "used_by": i.used_by.code if i.used_by else None,
                    "revoked": i.revoked,
                }
                for i in study.pilot_invites.select_related("used_by").order_by("-created_at")
            ]
        )

    @extend_schema(request=PilotInviteSerializer, responses={201: PilotInviteCreatedSerializer})
    def post(self, request, slug):
        """Create a pilot-tester invitation. The link is shown once and never stored."""
        study = get_study_for(request.user, slug, Perm.MANAGE_PARTICIPANTS)
        ser = PilotInviteSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        invite, token = pilot_invite_create(
            study=study, label=ser.validated_data["label"], actor=request.user
        )
        link = request.build_absolute_uri(
            reverse("participants:study", kwargs={"slug": study.slug})
            + "?"
            + urlencode({"pilot": token})
        )
        return Response(
            {"id": invite.pk, "label": invite.label, "link": link}, status=status.HTTP_201_CREATED
        )


class PilotInviteDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, slug, invite_id):
        study = get_study_for(request.user, slug, Perm.MANAGE_PARTICIPANTS)
        invite = get_object_or_404(PilotInvite, study=study, pk=invite_id)
        invite.revoked = True
        invite.save(update_fields=["revoked"])
        audit_record(
            actor=request.user, action="pilot_invite.revoke", target=invite, study_slug=study.slug
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
