"""Researcher API for chat: the pseudonymous message log (audited) and per-arm chat statistics
(the safety-alert queue's API is in the safety app).

Every endpoint resolves the study with `get_study_for` and looks objects up within that study,
so another study's ids answer 404. Participants appear only by their pseudonymous code.
"""

from __future__ import annotations

import datetime as dt

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.studies.permissions import get_study_for, has_perm
from studyplatform.studies.roles import Perm

from .models import Message
from .selectors import (
    FINAL_STATUSES,
    active_branch_ids,
    chat_stats,
    conversation_messages,
    conversations_for_study,
)
from .services import conversation_view


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- message log -----------------------------------------------------------------------------


def _conversation_row(c, show_arm: bool) -> dict:
    row = {
        "id": c.pk,
        "participant": c.participant.code,
        "created_at": _iso(c.created_at),
        "updated_at": _iso(c.updated_at),
        "imported": c.imported,
        "message_count": c.message_count,
    }
    if show_arm:
        row["arm"] = c.arm.key
    return row


def _message_row(m: Message, *, active: set[int], show_models: bool) -> dict:
    row = {
        "id": m.pk,
        "parent_id": m.parent_id,
        "role": m.role,
        "status": m.status,
        "content": m.content,
        "created_at": _iso(m.created_at),
        "first_token_at": _iso(m.first_token_at),
        "completed_at": _iso(m.completed_at),
        "latency_ms": m.latency_ms,
        "finish_reason": m.finish_reason,
        "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens,
        "tokens_estimated": m.tokens_estimated,
        "error_code": m.error_code,
        "imported": m.imported,
        "is_active_branch": m.pk in active,
    }
    # Each arm pins a model, so the model names would unblind a reader without allocation.
    if show_models:
        row["model_requested"] = m.model_requested
        row["model_reported"] = m.model_reported
        row["system_fingerprint"] = m.system_fingerprint
    return row


class ConversationSerializer(serializers.Serializer):
    """A conversation row as `_conversation_row` builds it (documents the response)."""

    id = serializers.IntegerField()
    participant = serializers.CharField(help_text="The participant's pseudonymous code.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    imported = serializers.BooleanField()
    message_count = serializers.IntegerField()
    arm = serializers.CharField(required=False, help_text="Only for roles that see allocation.")


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    parent_id = serializers.IntegerField(allow_null=True)
    role = serializers.ChoiceField(choices=Message.Role.choices)
    status = serializers.ChoiceField(choices=Message.Status.choices)
    content = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    first_token_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    latency_ms = serializers.IntegerField(allow_null=True)
    finish_reason = serializers.CharField(allow_blank=True)
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    tokens_estimated = serializers.BooleanField()
    error_code = serializers.CharField(allow_blank=True)
    imported = serializers.BooleanField()
    is_active_branch = serializers.BooleanField()
    # Only for roles that see allocation (each arm pins a model).
    model_requested = serializers.CharField(required=False, allow_blank=True)
    model_reported = serializers.CharField(required=False, allow_blank=True)
    system_fingerprint = serializers.CharField(required=False, allow_blank=True)


class ConversationDetailSerializer(ConversationSerializer):
    title = serializers.CharField(allow_blank=True)
    messages = MessageSerializer(many=True)


class ConversationListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("participant", OpenApiTypes.STR, description="A participant code."),
            OpenApiParameter("imported", OpenApiTypes.STR, enum=["0", "1"]),
        ],
        responses=ConversationSerializer(many=True),
    )
    def get(self, request, slug):
        """Conversations (no titles: they are participant text) with filters `participant`
        (code) and `imported` (0/1). The arm appears only for roles that see allocation."""
        study = get_study_for(request.user, slug, Perm.READ_CHAT)
        show_arm = has_perm(request.user, study, Perm.VIEW_ALLOCATION)
        qs = conversations_for_study(
            study,
            participant_code=request.query_params.get("participant", ""),
            imported=request.query_params.get("imported", ""),
        )
        return Response([_conversation_row(c, show_arm) for c in qs])


class ConversationDetailView(APIView):
    @extend_schema(responses=ConversationDetailSerializer)
    def get(self, request, slug, conversation_id):
        """Every message of the conversation (all branches) with timing and model details.
        Reading it writes an audit event."""
        study = get_study_for(request.user, slug, Perm.READ_CHAT)
        conversation = get_object_or_404(conversations_for_study(study), pk=conversation_id)
        show_arm = has_perm(request.user, study, Perm.VIEW_ALLOCATION)
        messages = conversation_messages(conversation)
        active = active_branch_ids(conversation, messages)
        conversation_view(conversation=conversation, actor=request.user, study_slug=study.slug)
        return Response(
            {
                **_conversation_row(conversation, show_arm),
                "title": conversation.title,
                "messages": [
                    _message_row(m, active=active, show_models=show_arm) for m in messages
                ],
            }
        )


# --- statistics ------------------------------------------------------------------------------


class ChatStatsSerializer(serializers.Serializer):
    """`ChatStats.as_dict`: one arm's (or the study's) chat figures."""

    conversations = serializers.IntegerField()
    user_messages = serializers.IntegerField()
    assistant_replies = serializers.IntegerField()
    replies_by_status = serializers.DictField(
        child=serializers.IntegerField(), help_text=f"Keys: {', '.join(FINAL_STATUSES)}."
    )
    error_rate = serializers.FloatField(allow_null=True)
    latency_ms_p50 = serializers.FloatField(allow_null=True)
    latency_ms_p95 = serializers.FloatField(allow_null=True)
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    # Only for roles that see allocation.
    models_reported = serializers.DictField(child=serializers.IntegerField(), required=False)
    system_fingerprints = serializers.DictField(child=serializers.IntegerField(), required=False)


class ChatStatsBodySerializer(serializers.Serializer):
    days = serializers.IntegerField(allow_null=True)
    total = ChatStatsSerializer()
    arms = serializers.DictField(
        child=ChatStatsSerializer(),
        required=False,
        help_text="By arm key; only for roles that see allocation.",
    )


class ChatStatsQuery(serializers.Serializer):
    days = serializers.IntegerField(required=False, min_value=1, max_value=3660)


class ChatStatsView(APIView):
    @extend_schema(parameters=[ChatStatsQuery], responses=ChatStatsBodySerializer)
    def get(self, request, slug):
        """Chat statistics over the last `days` days (all time without it), imported history
        excluded. Split by arm, and with the upstream models and fingerprints seen, only for
        roles that see allocation: each arm pins a model, so per-model counts would reveal the
        arms' sizes in a small study. Others get the total without them."""
        study = get_study_for(request.user, slug, Perm.VIEW_STUDY)
        query = ChatStatsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        days = query.validated_data.get("days")
        since = timezone.now() - dt.timedelta(days=days) if days else None
        stats = chat_stats(study, since=since)
        total = stats.pop("_total")
        unblinded = has_perm(request.user, study, Perm.VIEW_ALLOCATION)
        body: dict = {"days": days, "total": total.as_dict(by_model=unblinded)}
        if unblinded:
            body["arms"] = {key: s.as_dict() for key, s in sorted(stats.items(), key=_arm_key)}
        return Response(body)


def _arm_key(item: tuple) -> str:
    return item[0] or ""
