"""The Classifiers page: the protocol's classifiers, a form to start a run, and the runs with
progress, cost so far and errors. Rules live in the classifiers app's services; this page reads
the form, calls `classification_run_create` and lists what the selector returns."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _

from studyplatform.classifiers.selectors import classification_runs_for_study
from studyplatform.classifiers.services import (
    RunRefused,
    classification_run_create,
    study_classifiers,
)
from studyplatform.studies.models import Study
from studyplatform.studies.permissions import get_study_for
from studyplatform.studies.roles import Perm

from .monitor import _render

IN_PROGRESS = ("pending", "running")
NUMBER_FIELDS = ("sample", "seed", "max_judge_calls", "max_tokens", "concurrency")


def _form_data(post) -> dict[str, Any]:
    """The POSTed form as the API's JSON body: empty fields left out, numbers as text (the
    service checks them and names the field when one is not a whole number)."""
    data: dict[str, Any] = {
        "classifiers": post.getlist("classifiers"),
        "arms": post.getlist("arms"),
        "text": post.get("text", ""),
        "include_pilot": post.get("include_pilot") == "on",
    }
    for field in ("date_from", "date_to", *NUMBER_FIELDS):
        value = post.get(field, "").strip()
        if value:
            data[field] = value
    return {k: v for k, v in data.items() if v not in ("", [])}


@login_required
def classifiers(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
    section = study_classifiers(study)
    errors: dict[str, str] = {}
    form: dict[str, Any] = {
        "max_judge_calls": "1000",
        "concurrency": "8",
        "text": section.text if section else "anonymized",
        "include_pilot": study.status in (Study.Status.DRAFT, Study.Status.PILOTING),
    }
    if request.method == "POST":
        data = _form_data(request.POST)
        form = {**dict.fromkeys(NUMBER_FIELDS, ""), **data}
        try:
            run = classification_run_create(study=study, created_by=request.user, data=data)
        except RunRefused as refused:
            errors = refused.errors
        else:
            messages.success(request, _("Classification run %(id)s started.") % {"id": run.pk})
            return redirect("console:classifiers", slug=study.slug)
    runs = list(classification_runs_for_study(study)[:100])
    context = {
        "section": section,
        "definitions": [d.summary() for d in section.definitions] if section else [],
        "arms": list(study.arms.order_by("key").values_list("key", flat=True)),
        "runs": runs,
        "refresh": any(r.status in IN_PROGRESS for r in runs),
        "form": form,
        "errors": errors,
    }
    return _render(
        request, "classifiers.html", study, "classifiers", context, status=400 if errors else 200
    )
