"""Researcher API for classification runs: start one, list them, poll one.

Starting and reading runs needs the analysis permission (the role that may run analyses also
decides which chats a judge model reads); another study's researcher gets 404, as everywhere.
Bad input is a 400 naming each field, in the platform's validation-error shape
(`{field: [message]}`; services.run_params_clean holds the maxima).
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.studies.permissions import get_study_for
from studyplatform.studies.roles import Perm

from .models import ClassificationRun
from .selectors import classification_runs_for_study
from .services import (
    MAX_CALLS,
    MAX_CONCURRENCY,
    MAX_SAMPLE,
    MAX_SEED,
    MAX_TOKENS,
    RunRefused,
    classification_run_create,
    study_classifiers,
)


def run_row(run: ClassificationRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "progress": run.progress,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "created_by": run.created_by.get_username() if run.created_by else None,
        "protocol_version": run.protocol_version.number,
        "params": run.params,
        "classifiers": [c["ref"] for c in run.classifiers],
        "conversations": run.conversations,
        "skipped_participants": run.skipped_participants,
        "units_total": run.units_total,
        "units_done": run.units_done,
        "cost": {
            "judge_calls": run.judge_calls,
            "prompt_tokens": run.prompt_tokens,
            "completion_tokens": run.completion_tokens,
        },
        "cache_hits": run.cache_hits,
        "gated_out": run.gated_out,
        "unparseable": run.unparseable,
        "judge_errors": run.judge_errors,
        "recent_errors": run.recent_errors,
        "stop_reason": run.stop_reason,
        "error": run.error,
        # More than 1: a worker died and another resumed the run.
        "attempts": run.attempts,
    }


class RunStartSerializer(serializers.Serializer):
    """The request a run starts from (documentation: services.run_params_clean checks it, with
    the protocol, and names each bad field)."""

    classifiers = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        help_text="Classifier keys of the protocol (default: all); gates they need are added.",
    )
    arms = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, help_text="Default: all arms."
    )
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False)
    sample = serializers.IntegerField(
        min_value=1, max_value=MAX_SAMPLE, required=False, help_text="Random N conversations."
    )
    seed = serializers.IntegerField(min_value=0, max_value=MAX_SEED, required=False)
    max_judge_calls = serializers.IntegerField(min_value=1, max_value=MAX_CALLS, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=MAX_TOKENS, required=False)
    concurrency = serializers.IntegerField(min_value=1, max_value=MAX_CONCURRENCY, required=False)
    text = serializers.ChoiceField(choices=["anonymized", "raw"], required=False)
    include_pilot = serializers.BooleanField(required=False)


class RunCostSerializer(serializers.Serializer):
    judge_calls = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()


class ClassificationRunSerializer(serializers.Serializer):
    """The row run_row builds (documentation of the response; the view serialises by hand)."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ClassificationRun.Status.choices)
    progress = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    created_by = serializers.CharField(allow_null=True)
    protocol_version = serializers.IntegerField()
    params = serializers.DictField()
    classifiers = serializers.ListField(child=serializers.CharField())
    conversations = serializers.IntegerField()
    skipped_participants = serializers.IntegerField()
    units_total = serializers.IntegerField()
    units_done = serializers.IntegerField()
    cost = RunCostSerializer()
    cache_hits = serializers.IntegerField()
    gated_out = serializers.IntegerField()
    unparseable = serializers.IntegerField()
    judge_errors = serializers.IntegerField()
    recent_errors = serializers.ListField(child=serializers.JSONField())
    stop_reason = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)
    attempts = serializers.IntegerField()


class ClassifierSectionSerializer(serializers.Serializer):
    send_to_judge = serializers.BooleanField()
    consent_checkbox = serializers.CharField(required=False)
    text = serializers.ChoiceField(choices=["anonymized", "raw"], required=False)
    classifiers = serializers.ListField(
        child=serializers.JSONField(),
        help_text="Each classifier's key, version, question, answers, gate and judge.",
    )


_RUN_EXAMPLE = OpenApiExample(
    "A run that reached its budget",
    value={
        "id": 4,
        "status": "stopped",
        "progress": 62,
        "created_at": "2026-12-01T10:00:00+00:00",
        "started_at": "2026-12-01T10:00:01+00:00",
        "finished_at": "2026-12-01T10:03:40+00:00",
        "created_by": "olivia",
        "protocol_version": 3,
        "params": {"classifiers": ["sycophancy"], "sample": 50, "max_judge_calls": 500},
        "classifiers": ["sycophancy@1"],
        "conversations": 50,
        "skipped_participants": 2,
        "units_total": 806,
        "units_done": 500,
        "cost": {"judge_calls": 500, "prompt_tokens": 212000, "completion_tokens": 1500},
        "cache_hits": 0,
        "gated_out": 0,
        "unparseable": 1,
        "judge_errors": 0,
        "recent_errors": [],
        "stop_reason": "max_judge_calls reached",
        "error": "",
        "attempts": 1,
    },
    response_only=True,
)


class ClassifierListView(APIView):
    @extend_schema(responses=ClassifierSectionSerializer)
    def get(self, request, slug):
        """The classifiers the study's current protocol runs, with their judges."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        section = study_classifiers(study)
        if section is None:
            return Response({"classifiers": [], "send_to_judge": False})
        return Response(
            {
                "send_to_judge": section.send_to_judge,
                "consent_checkbox": section.consent_checkbox,
                "text": section.text,
                "classifiers": [d.summary() for d in section.definitions],
            }
        )


class ClassificationRunListView(APIView):
    @extend_schema(responses=ClassificationRunSerializer(many=True), examples=[_RUN_EXAMPLE])
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        return Response([run_row(r) for r in classification_runs_for_study(study)[:200]])

    @extend_schema(
        request=RunStartSerializer,
        responses={201: ClassificationRunSerializer},
        examples=[_RUN_EXAMPLE],
    )
    def post(self, request, slug):
        """Start a run over a selection, with a budget; it runs on the analysis queue."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        try:
            run = classification_run_create(study=study, created_by=request.user, data=request.data)
        except RunRefused as exc:
            # The platform's validation-error shape: each field to its messages.
            return Response(
                {field: [message] for field, message in exc.errors.items()},
                status=status.HTTP_400_BAD_REQUEST,
            )
        run = classification_runs_for_study(study).get(id=run.id)
        return Response(run_row(run), status=status.HTTP_201_CREATED)


class ClassificationRunDetailView(APIView):
    @extend_schema(responses=ClassificationRunSerializer, examples=[_RUN_EXAMPLE])
    def get(self, request, slug, run_id):
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        return Response(run_row(get_object_or_404(classification_runs_for_study(study), id=run_id)))
