"""Researcher API for chat: the pseudonymous message log (audited) and per-arm chat statistics
(the safety-alert queue's API is in the safety app).

Every endpoint resolves the study with `get_study_for` and looks objects up within that study,
so another study's ids answer 404. Participants appear only by their pseudonymous code.
"""

from __future__ import annotations

import datetime as dt

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.studies.permissions import get_study_for, has_perm
from studyplatform.studies.roles import Perm

from .models import Message
from .selectors import (
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


class ConversationListView(APIView):
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


class ChatStatsQuery(serializers.Serializer):
    days = serializers.IntegerField(required=False, min_value=1, max_value=3660)


class ChatStatsView(APIView):
    @extend_schema(parameters=[ChatStatsQuery])
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
