"""Researcher API for classification runs: start one, list them, poll one.

Starting and reading runs needs the analysis permission (the role that may run analyses also
decides which chats a judge model reads); another study's researcher gets 404, as everywhere.
Bad input is a 400 naming each field (services.run_params_clean holds the maxima).
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.studies.permissions import get_study_for
from studyplatform.studies.roles import Perm

from .models import ClassificationRun
from .selectors import classification_runs_for_study
from .services import RunRefused, classification_run_create, study_classifiers


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


class ClassifierListView(APIView):
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
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        return Response([run_row(r) for r in classification_runs_for_study(study)[:200]])

    def post(self, request, slug):
        """Start a run over a selection, with a budget; it runs on the analysis queue."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        try:
            run = classification_run_create(study=study, created_by=request.user, data=request.data)
        except RunRefused as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        run = classification_runs_for_study(study).get(id=run.id)
        return Response(run_row(run), status=status.HTTP_201_CREATED)


class ClassificationRunDetailView(APIView):
    def get(self, request, slug, run_id):
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        return Response(run_row(get_object_or_404(classification_runs_for_study(study), id=run_id)))
