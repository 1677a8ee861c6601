"""The study overview, /console/<slug>/: where a study's console pages start.

Status, protocol version, arms, enrollment, open safety alerts and the next steps for this
study's state, each shown only to the roles that may see it (a monitor is blind to arms, as on
every other page). Any member may open it; non-members get 404 (`get_study_for`).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from studyplatform.studies.models import Study
from studyplatform.studies.permissions import get_study_for, user_perms
from studyplatform.studies.roles import Perm
from surveys.selectors import task_day_counts

from .. import selectors as sel


def _next_steps(study: Study, perms: frozenset[Perm], overview: sel.Overview) -> list[dict]:
    """What someone with these roles would do next in this study's state, with the page for it."""
    slug = study.slug
    status = Study.Status(study.status)
    steps: list[tuple[bool, str, str]] = [
        (
            status == Study.Status.DRAFT and Perm.EDIT_PROTOCOL in perms,
            _("Finish the protocol in the designer."),
            reverse("console:design", args=[slug]),
        ),
        (
            status in (Study.Status.DRAFT, Study.Status.PILOTING)
            and Perm.MANAGE_LIFECYCLE in perms,
            _("Work through the launch checklist, pilot the study and launch it."),
            reverse("console:launch", args=[slug]),
        ),
        (
            status == Study.Status.PILOTING
            and Perm.MANAGE_PARTICIPANTS in perms
            and Perm.MANAGE_LIFECYCLE not in perms,
            _("Invite pilot testers."),
            reverse("console:launch", args=[slug]),
        ),
        (
            overview.open_alerts > 0 and Perm.REVIEW_SAFETY in perms,
            _("Review the open safety alerts."),
            reverse("console:monitor_safety", args=[slug]),
        ),
        (
            status in (Study.Status.RECRUITING, Study.Status.RUNNING)
            and Perm.VIEW_PARTICIPANTS in perms,
            _("Follow enrollment and survey compliance on the dashboard."),
            reverse("console:monitor_dashboard", args=[slug]),
        ),
        (
            status in (Study.Status.RUNNING, Study.Status.CLOSED) and Perm.RUN_ANALYSIS in perms,
            _("Run the analysis plan."),
            reverse("console:monitor_analyses", args=[slug]),
        ),
        (
            status in (Study.Status.RUNNING, Study.Status.CLOSED) and Perm.EXPORT_DATA in perms,
            _("Create an anonymized export of the data."),
            reverse("console:monitor_exports", args=[slug]),
        ),
    ]
    return [{"text": text, "url": url} for show, text, url in steps if show]


@login_required
@require_GET
def overview(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.VIEW_STUDY)
    perms = user_perms(request.user, study)
    counts = sel.study_overview(study, now=timezone.now())
    language = translation.get_language() or "en"
    arms = (
        [
            {"key": arm.key, "label": arm.label_for(language), "model": arm.model_name}
            for arm in study.arms.filter(is_active=True).order_by("key")
        ]
        if Perm.VIEW_PROTOCOL in perms
        else None
    )
    context = {
        "study": study,
        "tab": "overview",
        "arms": arms,
        "counts": counts if Perm.VIEW_PARTICIPANTS in perms else None,
        "target": study.protocol.get("study", {}).get("target_enrollment"),
        "alerts": counts if Perm.REVIEW_SAFETY in perms else None,
        "next_steps": _next_steps(study, perms, counts),
        # Daily conversation tasks: shown / conversation opened / chatted after, per study day.
        "task_days": task_day_counts(study)
        if Perm.VIEW_PARTICIPANTS in perms and study.protocol.get("tasks")
        else None,
    }
    return render(request, "console/overview.html", context)
