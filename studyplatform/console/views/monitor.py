"""Console pages for running a study: dashboard, participants, safety queue, team, analysis runs
and exports.

Every page resolves the study with `get_study_for` (non-member 404, member without the
permission 403) and passes the user's permissions to the tab bar. Writes go through the apps'
services, which audit them; reads come from `console.selectors`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST

from analysis.models import AnalysisRun
from analysis.selectors import analysis_run_summaries_for_study
from analysis.services import LookNotAllowed, analysis_look_default, analysis_run_create
from studyplatform.classifiers.services import study_classifiers
from studyplatform.core.csp import set_self_contained_policy
from studyplatform.core.links import site_url
from studyplatform.exports import codebook
from studyplatform.exports.models import DatasetExport
from studyplatform.exports.selectors import export_summaries_for_study
from studyplatform.exports.services import (
    CHAT_MODES,
    DATE_MODES,
    DEFAULT_OPTIONS,
    ExportError,
    export_create,
)
from studyplatform.exports.writers import FORMATS
from studyplatform.participants.models import Participant
from studyplatform.participants.selectors import participants_for_study
from studyplatform.safety.models import SafetyAlert
from studyplatform.safety.selectors import (
    alert_is_overdue,
    participant_messages_around,
    safety_alerts_for_study,
)
from studyplatform.safety.services import (
    AlertStateError,
    alert_acknowledge,
    alert_resolve,
    alert_view,
)
from studyplatform.studies.models import Membership, Study, StudyInvitation
from studyplatform.studies.permissions import get_study_for, user_perms
from studyplatform.studies.roles import ROLE_DESCRIPTIONS, Perm, Role
from studyplatform.studies.selectors import pending_invitations
from studyplatform.studies.services import (
    InvitationError,
    MembershipError,
    invitation_create,
    invitation_revoke,
    membership_remove,
)

from .. import charts
from .. import selectors as sel
from .requirements import requirements_context

PARTICIPANTS_PER_PAGE = 50


def _render(
    request: HttpRequest, template: str, study: Study, tab: str, context: dict[str, Any], status=200
) -> HttpResponse:
    base = {
        "study": study,
        "perms": user_perms(request.user, study),
        "tab": tab,
        "study_url": site_url("participants:study", kwargs={"slug": study.slug}),
    }
    return render(request, f"console/monitor/{template}", {**base, **context}, status=status)


def _svg(markup: str) -> str:
    # charts escapes every piece of text it writes, so its output is safe to embed as-is.
    return mark_safe(markup)  # noqa: S308


# --- dashboard -------------------------------------------------------------------------------


@login_required
@require_GET
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.VIEW_PARTICIPANTS)
    perms = user_perms(request.user, study)
    unblinded = Perm.VIEW_ALLOCATION in perms
    now = timezone.now()
    today = timezone.localdate(now)

    funnel = sel.funnel(study, today=today)
    stage_labels = {
        "visited": _("Visited"),
        "screened": _("Screened"),
        "eligible": _("Eligible"),
        "consented": _("Consented"),
        "active": _("Active"),
        "completed": _("Completed"),
        "withdrawn": _("Withdrawn"),
    }
    funnel_rows = [(stage_labels[s], funnel.totals.get(s, 0)) for s in sel.FUNNEL_STAGES] + [
        (stage_labels[s], funnel.status_counts[s]) for s in ("active", "completed", "withdrawn")
    ]
    day_labels = [d.strftime("%m-%d") for d in funnel.days]
    funnel_daily = charts.line_chart(
        chart_id="funnel-daily",
        title=_("Enrollment funnel per day"),
        x_labels=day_labels,
        series=[(stage_labels[s], funnel.daily[s]) for s in (*sel.FUNNEL_STAGES, "withdrawn")],
        empty_message=_("No visits yet."),
    )

    balance = sel.arm_balance(study) if unblinded else []
    compliance = sel.compliance(study)
    states = {
        "completed": ("#0072B2", _("Completed")),
        "open": ("#F0E442", _("Open")),
        "expired": ("#D55E00", _("Expired")),
        "not_yet": ("#eeeeee", _("Not yet")),
    }
    rated = [w for w in compliance.waves if w["rate"] is not None]
    heatmap = charts.heatmap(
        chart_id="compliance-heatmap",
        title=_("Survey compliance: participants by wave"),
        row_labels=compliance.participants,
        col_labels=[sel.wave_label(e, w) for e, w in compliance.columns],
        cells=compliance.cells,
        states=states,
        empty_message=_("No survey invitations yet."),
    )
    wave_rates = charts.hbar_chart(
        chart_id="wave-rates",
        title=_("Completion rate per wave (completed / invited)"),
        rows=[(w["label"], round(100 * w["rate"])) for w in rated],
        max_value=100,
        suffix="%",
        empty_message=_("No invitations have been sent yet."),
    )

    volume_days, volume = sel.chat_volume(study, today=today, by_arm=unblinded)
    chat_chart = charts.bar_chart(
        chart_id="chat-volume",
        title=_("Participant messages per day") + (" " + _("by arm") if unblinded else ""),
        x_labels=[d.strftime("%m-%d") for d in volume_days],
        series=[(_("All arms") if k == "all" else k, v) for k, v in volume.items()],
        empty_message=_("No chat messages yet."),
    )
    context = {
        "funnel": funnel,
        "funnel_rows": funnel_rows,
        "funnel_chart": _svg(
            charts.hbar_chart(
                chart_id="funnel-totals", title=_("Enrollment funnel"), rows=funnel_rows
            )
        ),
        "funnel_daily": _svg(funnel_daily),
        "unblinded": unblinded,
        "balance": balance,
        "balance_chart": _svg(
            charts.hbar_chart(
                chart_id="arm-balance",
                title=_("Participants per arm"),
                rows=balance,
                empty_message=_("No allocations yet."),
            )
        )
        if unblinded
        else "",
        "compliance": compliance,
        "heatmap": _svg(heatmap),
        "wave_rates": _svg(wave_rates),
        "chat_chart": _svg(chat_chart),
        "model_stats": sel.model_stats(study, by_arm=unblinded),
        "safety": sel.safety_summary(study, now=now),
    }
    context.update(requirements_context(study, now=now))
    return _render(request, "dashboard.html", study, "dashboard", context)


# --- participants ----------------------------------------------------------------------------


@login_required
@require_GET
def participants(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.VIEW_PARTICIPANTS)
    show_arm = Perm.VIEW_ALLOCATION in user_perms(request.user, study)
    status = request.GET.get("status", "")
    status = status if status in Participant.Status.values else ""
    pilot = request.GET.get("pilot", "")
    pilot = pilot if pilot in ("0", "1") else ""
    listed = participants_for_study(study, status=status, pilot=pilot)
    page = Paginator(listed, PARTICIPANTS_PER_PAGE)
    page_obj = page.get_page(request.GET.get("page"))
    rows = list(page_obj.object_list)
    done = sel.compliance_by_participant([p.pk for p in rows])
    for p in rows:
        p.completed_count, p.invited_count = done.get(p.pk, (0, 0))
    filters = {k: v for k, v in (("status", status), ("pilot", pilot)) if v}
    csv_query = urlencode({**filters, "download": "csv"})
    csv_url = (
        reverse("participants_api:participant-list", kwargs={"slug": study.slug}) + f"?{csv_query}"
    )
    context = {
        "rows": rows,
        "page_obj": page_obj,
        "show_arm": show_arm,
        "status": status,
        "pilot": pilot,
        "statuses": Participant.Status.choices,
        "csv_url": csv_url,
        "filter_query": urlencode(filters),
        "filtered": bool(filters),
    }
    return _render(request, "participants.html", study, "participants", context)


# --- safety ----------------------------------------------------------------------------------


SAFETY_FILTERS = ("unresolved", "open", "acknowledged", "resolved", "all")


@login_required
@require_GET
def safety(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.REVIEW_SAFETY)
    shown = request.GET.get("status", "unresolved")
    shown = shown if shown in SAFETY_FILTERS else "unresolved"
    alerts = safety_alerts_for_study(study)
    if shown == "unresolved":
        alerts = alerts.exclude(status=SafetyAlert.Status.RESOLVED)
    elif shown != "all":
        alerts = alerts.filter(status=shown)
    now = timezone.now()
    rows = list(alerts[:500])
    for alert in rows:
        alert.overdue = alert_is_overdue(alert, now=now)
        alert.age = now - alert.created_at
    context = {"alerts": rows, "shown": shown, "filters": SAFETY_FILTERS}
    return _render(request, "safety.html", study, "safety", context)


@login_required
@require_GET
def safety_alert(request: HttpRequest, slug: str, alert_id: int) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.REVIEW_SAFETY)
    alert = get_object_or_404(safety_alerts_for_study(study), pk=alert_id)
    # Reading the excerpt and the surrounding messages is audited, like the API's detail view.
    alert_view(alert=alert, actor=request.user)
    now = timezone.now()
    alert.overdue = alert_is_overdue(alert, now=now)
    context = {
        "alert": alert,
        "timeline": list(participant_messages_around(alert)),
        "age": now - alert.created_at,
    }
    return _render(request, "safety_alert.html", study, "safety", context)


@login_required
@require_POST
def safety_alert_action(
    request: HttpRequest, slug: str, alert_id: int, action: str
) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.REVIEW_SAFETY)
    alerts = SafetyAlert.objects.select_related("study", "participant")
    alert = get_object_or_404(alerts, pk=alert_id, study=study)
    note = request.POST.get("note", "")[:4000]
    try:
        if action == "acknowledge":
            alert_acknowledge(alert=alert, actor=request.user, note=note)
            messages.success(request, _("Alert acknowledged."))
        else:
            escalation = request.POST.get("escalation", "")[:4000]
            alert_resolve(alert=alert, actor=request.user, note=note, escalation=escalation)
            messages.success(request, _("Alert resolved."))
    except AlertStateError as error:
        # The API answers 409 here; on a page the reviewer needs to read why, then carry on.
        messages.error(request, str(error))
    return redirect("console:monitor_safety_alert", slug=study.slug, alert_id=alert.pk)


# --- team ------------------------------------------------------------------------------------


@login_required
def team(request: HttpRequest, slug: str) -> HttpResponse:
    """Members and pending invitations. Inviting emails a link; the role exists only once the
    address's verified owner accepts it while signed in (see console.views.invitation)."""
    study = get_study_for(request.user, slug, Perm.VIEW_STUDY)
    can_manage = Perm.MANAGE_MEMBERS in user_perms(request.user, study)
    errors: dict[str, str] = {}
    form = {"email": "", "role": ""}
    if request.method == "POST":
        if not can_manage:
            get_study_for(request.user, slug, Perm.MANAGE_MEMBERS)  # raises 403
        form = {
            "email": request.POST.get("email", "").strip()[:254],
            "role": request.POST.get("role", ""),
        }
        try:
            validate_email(form["email"])
        except ValidationError:
            errors["email"] = _("Enter a valid email address.")
        if form["role"] not in {r.value for r in Role}:
            errors["role"] = _("Choose a role.")
        if not errors:
            try:
                invitation_create(
                    study=study, email=form["email"], role=form["role"], actor=request.user
                )
            except InvitationError as error:
                errors["email" if error.code == "email" else "role"] = str(error)
            else:
                messages.success(
                    request,
                    _(
                        "Invited %(email)s as %(role)s. They were emailed a link; the role is "
                        "theirs once they accept it while signed in with that address."
                    )
                    % {"email": form["email"], "role": form["role"]},
                )
                return redirect("console:monitor_team", slug=study.slug)
    context = {
        "members": sel.members_of(study),
        "invitations": list(pending_invitations(study)) if can_manage else [],
        "can_manage": can_manage,
        "roles": [(r.value, ROLE_DESCRIPTIONS[r]) for r in Role],
        "form": form,
        "errors": errors,
    }
    return _render(request, "team.html", study, "team", context, status=400 if errors else 200)


@login_required
@require_POST
def team_invitation_revoke(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.MANAGE_MEMBERS)
    invitation = get_object_or_404(StudyInvitation, pk=invitation_id, study=study)
    try:
        invitation_revoke(invitation=invitation, actor=request.user)
    except InvitationError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            _("Withdrew the invitation for %(email)s as %(role)s.")
            % {"email": invitation.email, "role": invitation.role},
        )
    return redirect("console:monitor_team", slug=study.slug)


@login_required
@require_POST
def team_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.MANAGE_MEMBERS)
    membership = get_object_or_404(
        Membership.objects.select_related("user", "study"), pk=membership_id, study=study
    )
    try:
        membership_remove(membership=membership, actor=request.user)
    except MembershipError as error:
        messages.error(request, _("Not removed: %(reason)s.") % {"reason": error})
    else:
        messages.success(
            request,
            _("Removed %(user)s's %(role)s role.")
            % {"user": membership.user.get_username(), "role": membership.role},
        )
    return redirect("console:monitor_team", slug=study.slug)


# --- analyses and exports --------------------------------------------------------------------


IN_PROGRESS = ("pending", "running")


def _rate_outcome_plan(plan: dict[str, Any], rate: str) -> dict[str, Any]:
    """The plan overrides that add a classifier rate as an outcome of one run: after the plan's
    own outcomes, and outside the primary family (pinned to the plan's outcomes when the plan
    leaves the family at its default of every outcome), so the run stays exploratory for it."""
    outcomes = list(plan.get("outcomes", []))
    if rate in outcomes:
        return {}
    multiplicity = dict(plan.get("multiplicity") or {})
    multiplicity.setdefault("outcomes", outcomes)
    return {"outcomes": [*outcomes, rate], "multiplicity": multiplicity}


@login_required
def analyses(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
    section = study_classifiers(study)
    rates = [name for d in section.definitions for name in d.rate_features()] if section else []
    if request.method == "POST":
        params = {"include_pilot": request.POST.get("include_pilot") == "on"}
        chosen = request.POST.get("classifier_predictor", "").strip()
        chosen_outcome = request.POST.get("classifier_outcome", "").strip()
        for field, value in (
            ("classifier_predictor", chosen),
            ("classifier_outcome", chosen_outcome),
        ):
            if value and value not in rates:
                reason = f"{field}: must be one of {', '.join(rates) or '(none)'}"
                messages.error(
                    request, _("The run was not started: %(reason)s") % {"reason": reason}
                )
                return redirect("console:monitor_analyses", slug=study.slug)
        plan = (study.protocol or {}).get("analysis", {})
        if chosen:
            # The plan's own predictors keep their order (the first stays the primary term);
            # the classifier rate joins them for this run only.
            predictors = list(plan.get("predictors", []))
            params["plan"] = {"predictors": [*predictors, chosen]}
        if chosen_outcome:
            params["plan"] = {**params.get("plan", {}), **_rate_outcome_plan(plan, chosen_outcome)}
        try:
            run = analysis_run_create(
                study=study,
                created_by=request.user,
                params=params,
                look=request.POST.get("look") or None,
            )
        except LookNotAllowed as exc:
            messages.error(request, _("The run was not started: %(reason)s") % {"reason": exc})
            return redirect("console:monitor_analyses", slug=study.slug)
        messages.success(request, _("Analysis run %(id)s started.") % {"id": run.pk})
        return redirect("console:monitor_analyses", slug=study.slug)
    runs = list(analysis_run_summaries_for_study(study)[:100])
    context = {
        "runs": runs,
        "refresh": any(r.status in IN_PROGRESS for r in runs),
        "pilot_default": study.status in (Study.Status.DRAFT, Study.Status.PILOTING),
        "look_default": analysis_look_default(study),
        "done": AnalysisRun.Status.DONE,
        "classifier_rates": rates,
    }
    return _render(request, "analyses.html", study, "analyses", context)


@login_required
@require_GET
def analysis_report(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    """A run's report inside the console (tab bar and all); the report itself is in an <iframe>
    so its self-contained styles and policy stay its own."""
    study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
    run = get_object_or_404(analysis_run_summaries_for_study(study), pk=run_id)
    context = {"run": run, "ready": run.status == AnalysisRun.Status.DONE}
    return _render(request, "analysis_report.html", study, "analyses", context)


@login_required
@require_GET
@xframe_options_sameorigin
def analysis_report_document(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    """The stored report document, for the console's report page to frame (404 until done)."""
    study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
    run = get_object_or_404(
        AnalysisRun.objects.filter(study=study, status=AnalysisRun.Status.DONE), pk=run_id
    )
    response = HttpResponse(run.report_html, content_type="text/html; charset=utf-8")
    return set_self_contained_policy(response, run.report_html, framable_by_same_origin=True)


def _export_options(post) -> dict[str, Any]:
    k = post.get("k", "")
    return {
        "tables": post.getlist("tables"),
        "format": post.get("format", ""),
        "dates": post.get("dates", ""),
        "chat_mode": post.get("chat_mode", ""),
        "k": int(k) if k.strip().isdigit() else k,
        "include_pilot": post.get("include_pilot") == "on",
    }


@login_required
def exports(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.EXPORT_DATA)
    errors: dict[str, str] = {}
    options = dict(DEFAULT_OPTIONS)
    if request.method == "POST":
        options = {**options, **_export_options(request.POST)}
        try:
            export = export_create(
                study=study, user=request.user, options=_export_options(request.POST)
            )
        except ExportError as error:
            errors = error.errors
        else:
            messages.success(request, _("Export %(id)s queued.") % {"id": export.pk})
            return redirect("console:monitor_exports", slug=study.slug)
    now = timezone.now()
    rows = list(export_summaries_for_study(study)[:100])
    for export in rows:
        done = export.status == DatasetExport.Status.DONE
        export.downloadable = done and not export.is_expired(now)
    context = {
        "exports": rows,
        "refresh": any(e.status in IN_PROGRESS for e in rows),
        "options": options,
        "errors": errors,
        "tables": codebook.TABLES,
        "formats": FORMATS,
        "date_modes": DATE_MODES,
        "chat_modes": CHAT_MODES,
    }
    status = 400 if errors else 200
    return _render(request, "exports.html", study, "exports", context, status=status)
