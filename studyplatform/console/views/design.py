"""Console pages for designing studies: list, create, protocol designer, versions, calendar and
participant previews, pilot and launch.

Every page needs a signed-in researcher; studies are found with `get_study_for` (non-member 404,
member without the permission 403). Every write goes through the studies/participants services.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from studyplatform.chat.model_checks import study_models_test
from studyplatform.core import input_limits
from studyplatform.core.audit import audit_record
from studyplatform.core.csp import framable_by_same_origin
from studyplatform.core.i18n import localized
from studyplatform.participants import services as participant_services
from studyplatform.participants.forms import ConsentForm, ScreenerForm
from studyplatform.participants.models import Participant, PilotInvite
from studyplatform.participants.services import WithdrawalError, participant_withdraw
from studyplatform.studies.launch import study_launch_checklist
from studyplatform.studies.models import Study
from studyplatform.studies.permissions import get_study_for, has_perm, user_perms
from studyplatform.studies.protocol import (
    ProtocolError,
    ProtocolInvalid,
    ProtocolRefused,
    diff_documents,
    parse_protocol_text,
    to_yaml,
)
from studyplatform.studies.protocol.document import study_languages
from studyplatform.studies.roles import Perm
from studyplatform.studies.selectors import (
    protocol_for_editing,
    studies_visible_to,
    study_ids_with_perm,
    versions_of,
)
from studyplatform.studies.services import (
    LaunchBlocked,
    TransitionError,
    protocol_version_create,
    study_create_from_protocol,
    study_transition,
)

from ..design.calendar_preview import calendar_rows
from ..design.errors import locate_error
from ..design.fields import platform_languages
from ..design.sections import apply_section, section_initial
from ..forms import (
    SECTION_FORMS,
    SECTION_FORMSETS,
    CalendarForm,
    NewStudyForm,
    PilotInviteForm,
    YamlForm,
)

logger = logging.getLogger(__name__)

PREVIEW_PAGES = {
    "study": "participants/study.html",
    "screener": "participants/screener.html",
    "consent": "participants/consent.html",
}


# --- list and create ----------------------------------------------------------------------------


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    studies = studies_visible_to(request.user).annotate(
        participant_count=Count("participants", filter=Q(participants__is_pilot=False))
    )
    # Roles blind to the protocol (monitor) open a study at its dashboard, not the designer.
    with_protocol = study_ids_with_perm(request.user, Perm.VIEW_PROTOCOL)
    for study in studies:
        study.opens_designer = with_protocol is None or study.pk in with_protocol
    return render(request, "console/study_list.html", {"studies": studies})


@login_required
@require_http_methods(["GET", "POST"])
def study_new(request: HttpRequest) -> HttpResponse:
    form = NewStudyForm(request.POST or None, request.FILES or None)
    errors: list[ProtocolError] = []
    if request.method == "POST" and form.is_valid():
        try:
            doc = parse_protocol_text(form.protocol_text())
            if form.cleaned_data["source"] == "template":
                doc["study"]["slug"] = form.cleaned_data["slug"]
                doc["study"]["title"] = form.cleaned_data["title"]
            study = study_create_from_protocol(doc=doc, author=request.user)
        except ProtocolInvalid as exc:
            errors = exc.errors
            for error in errors:
                if error.parts == ("study", "slug") and form.cleaned_data["source"] == "template":
                    form.add_error("slug", error.message)
        else:
            messages.success(request, _("Study created. You are its owner."))
            return redirect("console:design", slug=study.slug)
    return render(
        request,
        "console/design/new.html",
        {"form": form, "errors": errors},
        status=400 if request.method == "POST" else 200,
    )


# --- the designer -------------------------------------------------------------------------------


def _checked(doc: dict) -> tuple[str, list[ProtocolError]]:
    """(normalized YAML, errors with line numbers in that YAML) for a merged document."""
    text = to_yaml(doc)
    try:
        parse_protocol_text(text)
    except ProtocolInvalid as exc:
        return text, exc.errors
    return text, []


def _section_forms(doc: dict, bound: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """{section: {"form": ..., "formset": ...}} with initial data from `doc` (or bound ones)."""
    out: dict[str, dict[str, Any]] = {}
    for section, form_class in SECTION_FORMS.items():
        if bound and section in bound:
            out[section] = bound[section]
            continue
        initial = section_initial(doc, section)
        entry: dict[str, Any] = {}
        if section in SECTION_FORMSETS:
            entry["form"] = form_class(prefix=section)
            entry["formset"] = SECTION_FORMSETS[section](initial=initial, prefix=section)
        else:
            entry["form"] = form_class(initial=initial, prefix=section)
        out[section] = entry
    return out


def _bind_section(request: HttpRequest, section: str, doc: dict) -> dict[str, Any]:
    entry: dict[str, Any] = {"form": SECTION_FORMS[section](request.POST, prefix=section)}
    if section in SECTION_FORMSETS:
        entry["formset"] = SECTION_FORMSETS[section](
            request.POST, initial=section_initial(doc, section), prefix=section
        )
    return entry


def _cleaned_section(entry: dict[str, Any]) -> tuple[Any, list]:
    """(cleaned data for apply_section, the formset forms in document order) or (None, [])."""
    form, formset = entry["form"], entry.get("formset")
    if not form.is_valid() or (formset is not None and not formset.is_valid()):
        return None, []
    if formset is None:
        return form.cleaned_data, []
    # Blank extra rows clean to {} and drop out, as do rows ticked for deletion.
    kept = [f for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
    return [f.cleaned_data for f in kept], kept


def _place_errors(
    entry: dict[str, Any], section: str, errors: list[ProtocolError], doc: dict, kept: list
) -> list[ProtocolError]:
    """Attach errors to the fields of the posted section; return the ones shown elsewhere."""
    elsewhere = []
    form = entry["form"]
    for error in errors:
        place = locate_error(error.parts, doc)
        message = error.message if not error.path else f"{error.path}: {error.message}"
        if place.section == "change_note":
            form.add_error("change_note", error.message)
        elif place.section != section:
            elsewhere.append(error)
        elif place.index is not None and place.index < len(kept):
            row = kept[place.index]
            row.add_error(place.field if place.field in row.fields else None, message)
        elif place.field and place.field in form.fields:
            form.add_error(place.field, message)
        else:
            form.add_error(None, message)
    return elsewhere


def _designer(
    request: HttpRequest,
    study: Study,
    *,
    bound: dict[str, Any] | None = None,
    yaml_form: YamlForm | None = None,
    errors: list[ProtocolError] | None = None,
    status: int = 200,
) -> HttpResponse:
    doc = protocol_for_editing(study)
    can_edit = has_perm(request.user, study, Perm.EDIT_PROTOCOL)
    forms = _section_forms(doc, bound)
    languages = study_languages(doc)
    consent_docs = {d["language"]: d for d in doc.get("consent", {}).get("documents", [])}
    return render(
        request,
        "console/design/designer.html",
        {
            "study": study,
            "tab": "design",
            "can_edit": can_edit,
            "forms": forms,
            "consent_docs": consent_docs,
            "study_languages": languages,
            "yaml_form": yaml_form or YamlForm(initial={"yaml": to_yaml(doc)}, prefix="yaml"),
            "errors": errors or [],
            "calendar_form": CalendarForm(
                initial={"enrolled": timezone.localdate(), "tz": study.timezone}
            ),
            "preview_pages": [
                ("study", _("Study page")),
                ("screener", _("Screener")),
                ("consent", _("Consent")),
            ],
        },
        status=status,
    )


@login_required
@require_GET
def design_view(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.VIEW_PROTOCOL)
    return _designer(request, study)


def _save(request: HttpRequest, study: Study, doc: dict, note: str) -> list[ProtocolError]:
    """Create the new version; returns the errors the service raised (nothing saved then)."""
    try:
        version, created = protocol_version_create(
            study=study, doc=doc, author=request.user, change_note=note
        )
    except ProtocolInvalid as exc:
        return exc.errors
    if created:
        messages.success(request, _("Saved as protocol version %(n)d.") % {"n": version.number})
    else:
        messages.info(request, _("Nothing changed; no new version was created."))
    return []


@login_required
@require_POST
def design_section(request: HttpRequest, slug: str, section: str) -> HttpResponse:
    """Merge one section's form into the current protocol, validate, and save a version.

    With ?preview=1 nothing is saved: the answer is the merged YAML and its errors (JSON), which
    designer.js uses to refresh the YAML view while the researcher edits a form.
    """
    if section not in SECTION_FORMS:
        raise Http404("No such section.")
    study = get_study_for(request.user, slug, Perm.EDIT_PROTOCOL)
    current = protocol_for_editing(study)
    entry = _bind_section(request, section, current)
    data, kept = _cleaned_section(entry)
    preview = request.GET.get("preview") == "1"
    if data is None:
        if preview:
            return JsonResponse({"valid": False, "errors": [], "yaml": None, "form_errors": True})
        return _designer(request, study, bound={section: entry}, status=400)
    doc = apply_section(current, section, data)
    text, errors = _checked(doc)
    if preview:
        return JsonResponse(
            {"valid": not errors, "errors": [e.as_dict() for e in errors], "yaml": text}
        )
    if not errors:
        errors = _save(request, study, doc, entry["form"].cleaned_data.get("change_note", ""))
        if not errors:
            return redirect(reverse("console:design", args=[study.slug]) + f"#section-{section}")
    elsewhere = _place_errors(entry, section, errors, doc, kept)
    return _designer(request, study, bound={section: entry}, errors=elsewhere, status=400)


@login_required
@require_POST
def design_yaml(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.EDIT_PROTOCOL)
    form = YamlForm(request.POST, prefix="yaml")
    errors: list[ProtocolError] = []
    if form.is_valid():
        try:
            doc = parse_protocol_text(form.cleaned_data["yaml"])
        except ProtocolInvalid as exc:
            errors = exc.errors
        else:
            errors = _save(request, study, doc, form.cleaned_data["change_note"])
            for error in errors:
                if error.parts == ("change_note",):
                    form.add_error("change_note", error.message)
            if not errors:
                return redirect(reverse("console:design", args=[study.slug]) + "#yaml")
    return _designer(request, study, yaml_form=form, errors=errors, status=400)


@login_required
@require_POST
def design_validate(request: HttpRequest, slug: str) -> JsonResponse:
    """JSON {"yaml": text} -> {"valid", "errors": [{path, message, line}], "yaml": normalized}."""
    get_study_for(request.user, slug, Perm.EDIT_PROTOCOL)
    try:
        payload = input_limits.loads(request.body or b"{}")
        text = payload["yaml"]
        if not isinstance(text, str):
            raise TypeError
    except (input_limits.InputRejected, KeyError, TypeError):
        return JsonResponse({"detail": _('Send JSON: {"yaml": "..."}')}, status=400)
    try:
        doc = parse_protocol_text(text)
    except ProtocolInvalid as exc:
        # Text over a ceiling (size, nesting, aliases) is a bad request, not just invalid.
        return JsonResponse(
            {"valid": False, "errors": [e.as_dict() for e in exc.errors], "yaml": None},
            status=400 if isinstance(exc, ProtocolRefused) else 200,
        )
    return JsonResponse({"valid": True, "errors": [], "yaml": to_yaml(doc)})


@login_required
@require_GET
@xframe_options_sameorigin
@framable_by_same_origin
def calendar_view(request: HttpRequest, slug: str) -> HttpResponse:
    """Every survey occurrence for a participant enrolled at noon on the chosen date."""
    study = get_study_for(request.user, slug, Perm.VIEW_STUDY)
    form = CalendarForm(request.GET)
    enrolled = timezone.localdate()
    tz = study.timezone
    if form.is_valid():
        enrolled = form.cleaned_data["enrolled"] or enrolled
        tz = form.cleaned_data["tz"] or tz
    rows, event_entries = calendar_rows(study.protocol, enrolled_on=enrolled, tz=tz)
    return render(
        request,
        "console/design/calendar.html",
        {
            "study": study,
            "form": form,
            "rows": rows,
            "event_entries": event_entries,
            "enrolled": enrolled,
            "tz": tz,
            "embed": request.GET.get("embed") == "1",
        },
    )


@login_required
@require_GET
def versions_view(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.VIEW_PROTOCOL)
    versions = list(versions_of(study))
    rows = []
    for newer, older in zip(versions, [*versions[1:], None], strict=True):
        diff = diff_documents(older.content, newer.content) if older else None
        rows.append({"version": newer, "previous": older, "diff": diff})
    return render(
        request, "console/design/versions.html", {"study": study, "tab": "versions", "rows": rows}
    )


# --- participant preview ------------------------------------------------------------------------


def _read_only_script() -> str:
    # A static file, not an inline block: the Content-Security-Policy runs no inline scripts.
    return f'<script src="{static("console/preview_readonly.js")}"></script>\n'


def _consent_preview_document(doc: dict, language: str) -> SimpleNamespace | None:
    documents = {d["language"]: d for d in doc.get("consent", {}).get("documents", [])}
    chosen = localized(documents, language, default=None)
    if chosen is None:
        return None
    return SimpleNamespace(**chosen, signature=doc["consent"].get("signature", "checkbox"))


@login_required
@require_GET
@xframe_options_sameorigin
@framable_by_same_origin
def preview_view(request: HttpRequest, slug: str, page: str) -> HttpResponse:
    """A participant page rendered from the current protocol, read-only, for an <iframe>."""
    study = get_study_for(request.user, slug, Perm.VIEW_STUDY)
    if page not in PREVIEW_PAGES:
        raise Http404("No such page.")
    language = request.GET.get("lang", "en")
    if language not in platform_languages():
        language = "en"
    doc = study.protocol
    with translation.override(language):
        # The same context the participant views build, without their side effects (no funnel
        # counts, no session keys), as a study that is open to everyone.
        context: dict[str, Any] = {"study": study}
        if page == "study":
            context.update(
                state="open",
                protocol=doc,
                description=localized(doc["study"].get("description", ""), language),
            )
        elif page == "screener":
            questions = doc.get("screener", {}).get("questions", [])
            context["form"] = ScreenerForm(questions=questions, language=language)
        else:
            document = _consent_preview_document(doc, language)
            if document is None:
                raise Http404("No consent document.")
            collect_email = doc["study"].get("recruitment", {}).get("collect_email", True)
            context["document"] = document
            context["form"] = ConsentForm(document=document, collect_email=collect_email)
        html = render_to_string(PREVIEW_PAGES[page], context, request=request)
        banner = '<p role="note" class="preview-banner">{}</p>'.format(
            _("Preview (read-only): nothing you enter here is saved.")
        )
    html = html.replace("<main>", "<main>" + banner, 1).replace(
        "</body>", _read_only_script() + "</body>", 1
    )
    return HttpResponse(html)


# --- pilot and launch ---------------------------------------------------------------------------


def _launch_study(request: HttpRequest, slug: str) -> Study:
    """The launch page serves both lifecycle managers and pilot-tester managers."""
    study = get_study_for(request.user, slug, Perm.VIEW_STUDY)
    perms = user_perms(request.user, study)
    if not perms & {Perm.MANAGE_LIFECYCLE, Perm.MANAGE_PARTICIPANTS}:
        raise PermissionDenied(_("Your role in this study does not allow piloting or launching."))
    return study


@login_required
@require_GET
def launch_view(request: HttpRequest, slug: str) -> HttpResponse:
    study = _launch_study(request, slug)
    checklist = study_launch_checklist(study)
    return render(
        request,
        "console/design/launch.html",
        {
            "study": study,
            "tab": "launch",
            "checklist": checklist,
            "ready": all(item.ok for item in checklist),
            "can_lifecycle": has_perm(request.user, study, Perm.MANAGE_LIFECYCLE),
            "can_participants": has_perm(request.user, study, Perm.MANAGE_PARTICIPANTS),
            "invites": study.pilot_invites.select_related("used_by").order_by("-created_at"),
            "invite_form": PilotInviteForm(),
            "new_link": request.session.pop(f"pilot-link:{study.pk}", None),
            "pilot_count": study.participants.filter(is_pilot=True)
            .exclude(status=Participant.Status.WITHDRAWN)
            .count(),
        },
    )


def _back(study: Study) -> HttpResponse:
    return redirect("console:launch", slug=study.slug)


@login_required
@require_POST
def launch_transition(request: HttpRequest, slug: str) -> HttpResponse:
    """Move the study: draft -> piloting, piloting -> draft, piloting -> recruiting (checked)."""
    study = get_study_for(request.user, slug, Perm.MANAGE_LIFECYCLE)
    target = request.POST.get("to", "")
    if target not in (Study.Status.PILOTING, Study.Status.DRAFT, Study.Status.RECRUITING):
        messages.error(request, _("Use the buttons on this page to pilot or launch."))
        return _back(study)
    try:
        study_transition(study=study, to=target, actor=request.user)
    except LaunchBlocked as exc:
        # The checklist on the launch page lists each failing item and why.
        messages.error(
            request,
            _("Not launched: %(n)d checklist items fail.") % {"n": len(exc.failing)},
        )
    except TransitionError as exc:
        messages.error(request, str(exc))
    else:
        labels = {
            Study.Status.PILOTING: _("Piloting started: invite testers below."),
            Study.Status.DRAFT: _("Back to draft."),
            Study.Status.RECRUITING: _("Launched: the study is recruiting."),
        }
        messages.success(request, labels[target])
    return _back(study)


@login_required
@require_POST
def launch_test_models(request: HttpRequest, slug: str) -> HttpResponse:
    """Send a test message to every active arm's model (registered endpoints only); each result
    is an audit event."""
    study = get_study_for(request.user, slug, Perm.MANAGE_LIFECYCLE)
    for result in study_models_test(study=study, actor=request.user):
        if result.ok:
            messages.success(
                request, _("Arm %(arm)s: the model replied.") % {"arm": result.arm.key}
            )
        else:
            messages.error(
                request,
                _("Arm %(arm)s: %(error)s") % {"arm": result.arm.key, "error": result.error},
            )
    return _back(study)


@login_required
@require_POST
def pilot_invite_create(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.MANAGE_PARTICIPANTS)
    form = PilotInviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Say who the invitation is for."))
        return _back(study)
    _invite, token = participant_services.pilot_invite_create(
        study=study, label=form.cleaned_data["label"], actor=request.user
    )
    # Only the digest is stored: the link is shown once, on the next page load.
    request.session[f"pilot-link:{study.pk}"] = request.build_absolute_uri(
        reverse("participants:study", kwargs={"slug": study.slug})
        + "?"
        + urlencode({"pilot": token})
    )
    return _back(study)


@login_required
@require_POST
def pilot_invite_revoke(request: HttpRequest, slug: str, invite_id: int) -> HttpResponse:
    study = get_study_for(request.user, slug, Perm.MANAGE_PARTICIPANTS)
    invite = get_object_or_404(PilotInvite, study=study, pk=invite_id)
    with transaction.atomic():
        invite.revoked = True
        invite.save(update_fields=["revoked"])
        audit_record(
            actor=request.user, action="pilot_invite.revoke", target=invite, study_slug=study.slug
        )
    messages.success(request, _("Invitation revoked."))
    return _back(study)


@login_required
@require_POST
def pilot_reset(request: HttpRequest, slug: str) -> HttpResponse:
    """Delete every pilot tester's data (withdrawal with deletion), all or nothing."""
    study = get_study_for(request.user, slug, Perm.MANAGE_PARTICIPANTS)
    # Testers who already withdrew cannot be withdrawn again (a withdrawal is final).
    pilots = study.participants.filter(is_pilot=True).exclude(status=Participant.Status.WITHDRAWN)
    try:
        with transaction.atomic():
            count = 0
            for participant in pilots.select_for_update():
                participant_withdraw(
                    participant=participant,
                    mode=Participant.Withdrawal.DELETE,
                    by="researcher",
                    actor=request.user,
                    reason="pilot data reset",
                )
                count += 1
            audit_record(
                actor=request.user,
                action="pilot.reset",
                target=study,
                study_slug=study.slug,
                data={"participants": count},
            )
    except WithdrawalError as exc:
        messages.error(request, _("Pilot data was not reset: %(e)s") % {"e": exc})
    else:
        messages.success(request, _("Deleted the data of %(n)d pilot testers.") % {"n": count})
    return _back(study)
