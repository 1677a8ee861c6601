"""Researcher API for participants: list (JSON or CSV), funnel, pilot invitations, withdrawal on
a participant's request, and the audited identity-vault view."""

from __future__ import annotations

import csv

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import urlencode
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.core.audit import audit_record
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


class ParticipantListView(APIView):
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
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.VIEW_PARTICIPANTS)
        return Response(funnel_totals(study))


class WithdrawSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=Participant.Withdrawal.values)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class ParticipantWithdrawView(APIView):
    @extend_schema(request=WithdrawSerializer)
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

    @extend_schema(request=PilotInviteSerializer)
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
    def delete(self, request, slug, invite_id):
        study = get_study_for(request.user, slug, Perm.MANAGE_PARTICIPANTS)
        invite = get_object_or_404(PilotInvite, study=study, pk=invite_id)
        invite.revoked = True
        invite.save(update_fields=["revoked"])
        audit_record(
            actor=request.user, action="pilot_invite.revoke", target=invite, study_slug=study.slug
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
