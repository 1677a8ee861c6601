"""Researcher API for the safety-alert review queue: list, audited detail (with the
participant's messages around the alert), acknowledge and resolve.

Every endpoint resolves the study with `get_study_for` (REVIEW_SAFETY) and looks alerts up
within that study, so another study's ids answer 404. Participants appear only by their
pseudonymous code.
"""

from __future__ import annotations

import datetime as dt

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.core.schema import error
from studyplatform.studies.permissions import get_study_for
from studyplatform.studies.roles import Perm

from .models import SafetyAlert
from .selectors import alert_is_overdue, participant_messages_around, safety_alerts_for_study
from .services import AlertStateError, alert_acknowledge, alert_resolve, alert_view


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _user(u) -> str | None:
    return u.get_username() if u is not None else None


def _alert_row(a: SafetyAlert, now: dt.datetime) -> dict:
    return {
        "id": a.pk,
        "participant": a.participant.code,
        "source": a.source,
        "severity": a.severity,
        "category": a.category,
        "excerpt": a.excerpt,
        "created_at": _iso(a.created_at),
        "due_at": _iso(a.due_at),
        "overdue": alert_is_overdue(a, now=now),
        "status": a.status,
        "acknowledged_by": _user(a.acknowledged_by),
        "acknowledged_at": _iso(a.acknowledged_at),
        "resolved_by": _user(a.resolved_by),
        "resolved_at": _iso(a.resolved_at),
        "notes": a.notes,
        "message_id": a.message_id,
    }


class SafetyAlertSerializer(serializers.Serializer):
    """An alert row as `_alert_row` builds it (documents the response)."""

    id = serializers.IntegerField()
    participant = serializers.CharField(help_text="The participant's pseudonymous code.")
    source = serializers.CharField(help_text="chat or survey")
    severity = serializers.ChoiceField(choices=SafetyAlert.Severity.choices)
    category = serializers.CharField()
    excerpt = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField()
    overdue = serializers.BooleanField()
    status = serializers.ChoiceField(choices=SafetyAlert.Status.choices)
    acknowledged_by = serializers.CharField(allow_null=True)
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    resolved_by = serializers.CharField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    notes = serializers.CharField(allow_blank=True)
    message_id = serializers.IntegerField(allow_null=True)


class TimelineMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    # The chat app's Message.Role and Message.Status values (safety may not import chat).
    role = serializers.CharField()
    status = serializers.CharField()
    content = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    is_alert_message = serializers.BooleanField()


class SafetyAlertDetailSerializer(SafetyAlertSerializer):
    timeline = TimelineMessageSerializer(many=True)


class SafetyAlertQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=SafetyAlert.Status.values, required=False)


class SafetyAlertListView(APIView):
    @extend_schema(parameters=[SafetyAlertQuery], responses=SafetyAlertSerializer(many=True))
    def get(self, request, slug):
        """The review queue, high severity first then oldest first; filter with `status`."""
        study = get_study_for(request.user, slug, Perm.REVIEW_SAFETY)
        query = SafetyAlertQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        now = timezone.now()
        alerts = safety_alerts_for_study(study, status=query.validated_data.get("status", ""))
        return Response([_alert_row(a, now) for a in alerts])


class SafetyAlertDetailView(APIView):
    @extend_schema(responses=SafetyAlertDetailSerializer)
    def get(self, request, slug, alert_id):
        """The alert and the participant's messages from 24 h before to 24 h after it.
        Reading it writes an audit event."""
        study = get_study_for(request.user, slug, Perm.REVIEW_SAFETY)
        alert = get_object_or_404(safety_alerts_for_study(study), pk=alert_id)
        alert_view(alert=alert, actor=request.user)
        timeline = [
            {
                "id": m.pk,
                "conversation_id": m.conversation_id,
                "role": m.role,
                "status": m.status,
                "content": m.content,
                "created_at": _iso(m.created_at),
                "is_alert_message": m.pk == alert.message_id,
            }
            for m in participant_messages_around(alert)
        ]
        return Response({**_alert_row(alert, timezone.now()), "timeline": timeline})


class AcknowledgeSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


class ResolveSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=4000)
    escalation = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=4000
    )


def _queue_change(request, slug: str, alert_id: int, form: type[serializers.Serializer], change):
    """Acknowledge or resolve: `change(alert=, actor=, **validated form)` is the service; 409
    when the alert is no longer in a state that allows it (someone else got there first)."""
    study = get_study_for(request.user, slug, Perm.REVIEW_SAFETY)
    alert = get_object_or_404(safety_alerts_for_study(study), pk=alert_id)
    ser = form(data=request.data)
    ser.is_valid(raise_exception=True)
    try:
        alert = change(alert=alert, actor=request.user, **ser.validated_data)
    except AlertStateError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    alert = safety_alerts_for_study(study).get(pk=alert.pk)
    return Response(_alert_row(alert, timezone.now()))


class SafetyAlertAcknowledgeView(APIView):
    @extend_schema(
        request=AcknowledgeSerializer,
        responses={200: SafetyAlertSerializer, 409: error("The alert is no longer open.")},
    )
    def post(self, request, slug, alert_id):
        """Take the alert (open → acknowledged). 409 if it is no longer open."""
        return _queue_change(request, slug, alert_id, AcknowledgeSerializer, alert_acknowledge)


class SafetyAlertResolveView(APIView):
    @extend_schema(
        request=ResolveSerializer,
        responses={
            200: SafetyAlertSerializer,
            409: error("The alert is already resolved."),
        },
    )
    def post(self, request, slug, alert_id):
        """Close the alert with a note (required) and any escalation. 409 if already resolved."""
        return _queue_change(request, slug, alert_id, ResolveSerializer, alert_resolve)
