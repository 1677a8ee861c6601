"""The Classifiers page: the protocol's classifiers, a form to start a run, and the runs with
progress, cost so far and errors; and the coding pages (a blinded sample, one unit at a time,
then the agreement figures). Rules live in the classifiers app's services; this page reads
the form, calls `classification_run_create` and lists what the selector returns."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from studyplatform.classifiers.coding import (
    CodingRefused,
    coder_progress,
    coding_agreement,
    coding_item_turns,
    coding_sample_create,
    human_label_record,
)
from studyplatform.classifiers.models import CodingSample, HumanLabel
from studyplatform.classifiers.selectors import (
    classification_runs_for_study,
    coding_samples_for_study,
)
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
    samples = list(coding_samples_for_study(study, coder=request.user)[:50])
    context = {
        "samples": samples,
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


# --- validation against human coders ----------------------------------------------------------


def _sample_for(request: HttpRequest, slug: str, sample_id: int):
    study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
    sample = get_object_or_404(CodingSample.objects.filter(study=study), pk=sample_id)
    return study, sample


@login_required
@require_POST
def coding_sample_new(request: HttpRequest, slug: str) -> HttpResponse:
    """Draw a blinded sample from the form on the Classifiers page, then open it for coding."""
    study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
    data = {
        field: request.POST.get(field, "").strip()
        for field in ("classifier", "size", "seed")
        if request.POST.get(field, "").strip()
    }
    try:
        sample = coding_sample_create(study=study, created_by=request.user, data=data)
    except CodingRefused as refused:
        for field, message in refused.errors.items():
            messages.error(request, f"{field}: {message}")
        return redirect("console:classifiers", slug=study.slug)
    return redirect("console:coding", slug=study.slug, sample_id=sample.pk)


@login_required
def coding(request: HttpRequest, slug: str, sample_id: int) -> HttpResponse:
    """One unit at a time, classifier answer hidden: the coder's next uncoded unit (or the one
    at ?position=), its text as the judge read it, and the classifier's answers to choose from."""
    study, sample = _sample_for(request, slug, sample_id)
    error = ""
    if request.method == "POST":
        item = get_object_or_404(sample.items.select_related("sample"), pk=request.POST.get("item"))
        try:
            human_label_record(item=item, coder=request.user, label=request.POST.get("label"))
        except CodingRefused as refused:
            error = refused.errors["label"]
        else:
            return redirect("console:coding", slug=study.slug, sample_id=sample.pk)
    coded, item = coder_progress(sample, request.user)
    position = request.GET.get("position", "")
    if error:
        item = get_object_or_404(sample.items, pk=request.POST.get("item"))
    elif position.isdigit():
        item = get_object_or_404(sample.items, position=int(position))
    language = translation.get_language() or "en"
    definition = sample.definition
    mine = (
        HumanLabel.objects.filter(item=item, coder=request.user).values_list("label", flat=True)
        if item
        else []
    )
    context = {
        "sample": sample,
        "item": item,
        "turns": coding_item_turns(item, sample) if item else [],
        "question": _localized(definition.get("question", {}), language),
        "title": _localized(definition.get("title", {}), language),
        "levels": [
            {"code": lv["code"], "label": _localized(lv["label"], language)}
            for lv in definition.get("levels", [])
        ],
        "my_label": next(iter(mine), None),
        "coded": coded,
        "total": sample.items.count(),
        "error": error,
    }
    return _render(
        request, "coding.html", study, "classifiers", context, status=400 if error else 200
    )


@login_required
@require_GET
def coding_agreement_page(request: HttpRequest, slug: str, sample_id: int) -> HttpResponse:
    study, sample = _sample_for(request, slug, sample_id)
    figures = coding_agreement(sample)
    return _render(
        request,
        "coding_agreement.html",
        study,
        "classifiers",
        {"sample": sample, "figures": figures, "ordinal": figures["output_type"] == "ordinal"},
    )


def _localized(mapping: dict[str, str], language: str) -> str:
    """`mapping` in the interface language (pt-br and pt-BR alike), else English, else any."""
    for lang, text in mapping.items():
        if lang.lower() == language.lower():
            return text
    return mapping.get("en") or next(iter(mapping.values()), "")
