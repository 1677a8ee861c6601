"""Participant questionnaire pages: start an invitation, answer each instrument on its own page
(save for later or submit), and a thank-you page that shows crisis resources when an answer
raised a safety flag. Views validate input, call one service, render."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from studyplatform.participants.session import participant_required
from studyplatform.safety.services import crisis_resources_html

from . import daily_tasks, selectors
from .forms import InstrumentForm, shown_instrument
from .instruments import UnknownInstrumentError
from .models import Invitation, Response
from .services import SurveyError, instrument_for, invitation_open, response_save

SAFETY_PREFIXES = ("safety:", "protocol:")


def _closed(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    # 410 Gone: the questionnaire existed but its window has passed (or it was cancelled).
    return render(request, "surveys/closed.html", {"invitation": invitation}, status=410)


def _flagged(latest: dict[str, Response]) -> bool:
    return any(
        flag.startswith(SAFETY_PREFIXES)
        for response in latest.values()
        if response.status == Response.Status.SUBMITTED
        for flag in response.flags
    )


def _next_key(invitation: Invitation, latest: dict[str, Response]) -> str | None:
    for key in invitation.instruments:
        response = latest.get(key)
        if response is None or response.status != Response.Status.SUBMITTED:
            return key
    return None


@participant_required
def survey_start(request: HttpRequest, invitation_id: int) -> HttpResponse:
    """The emailed link lands here: mark the invitation opened, go to the first unanswered
    questionnaire."""
    invitation = selectors.invitation_for_participant(request.participant, invitation_id)
    if invitation.status == Invitation.Status.COMPLETED:
        return redirect("surveys:thanks", invitation_id=invitation.pk)
    try:
        invitation = invitation_open(invitation=invitation)
    except SurveyError:
        return _closed(request, invitation)
    key = _next_key(invitation, selectors.responses_by_instrument(invitation))
    if key is None:  # every part submitted; completion is recorded with the last one
        return redirect("surveys:thanks", invitation_id=invitation.pk)
    return redirect("surveys:instrument", invitation_id=invitation.pk, key=key)


def _error_message(reason: str) -> str:
    # The service words its reasons in English for researchers and logs; participants get a
    # translated sentence, with the specific reason only when it adds something (a range).
    if reason == "this answer is required":
        return _("This answer is required.")
    return _("Please check this answer: %(reason)s.") % {"reason": reason}


@participant_required
@require_http_methods(["GET", "POST"])
def survey_instrument(request: HttpRequest, invitation_id: int, key: str) -> HttpResponse:
    participant = request.participant
    invitation = selectors.invitation_for_participant(participant, invitation_id)
    if key not in invitation.instruments:
        raise Http404("No such questionnaire in this invitation.")
    if invitation.status == Invitation.Status.COMPLETED:
        return redirect("surveys:thanks", invitation_id=invitation.pk)
    if not invitation.is_open(timezone.now()):
        return _closed(request, invitation)
    latest = selectors.responses_by_instrument(invitation)
    saved = latest.get(key)
    if saved is not None and saved.status == Response.Status.SUBMITTED:
        return redirect("surveys:start", invitation_id=invitation.pk)
    try:
        instrument = instrument_for(invitation, key)
    except UnknownInstrumentError:
        raise Http404("Unknown questionnaire.") from None
    shown = shown_instrument(
        instrument, language=participant.language, protocol=invitation.protocol_version.content
    )
    status = 200
    if request.method == "POST":
        submit = request.POST.get("action") == "submit"
        form = InstrumentForm(request.POST, shown=shown)
        if form.is_valid():
            try:
                result = response_save(
                    invitation=invitation,
                    instrument_key=key,
                    answers=form.answers(),
                    submit=submit,
                )
            except SurveyError as exc:
                if exc.code == "closed":
                    return _closed(request, invitation)
                if exc.code == "already_submitted":
                    return redirect("surveys:start", invitation_id=invitation.pk)
                for item_id, reason in exc.errors.items():
                    if item_id in form.fields:
                        form.add_error(item_id, _error_message(reason))
                    else:
                        form.add_error(None, _error_message(reason))
                if not exc.errors:
                    form.add_error(None, _("Your answers could not be saved. Please try again."))
            else:
                if not submit:
                    messages.success(
                        request,
                        _(
                            "Your answers are saved. You can come back and finish until the "
                            "questionnaire closes."
                        ),
                    )
                    return redirect("participants:home")
                if result.invitation_completed:
                    return redirect("surveys:thanks", invitation_id=invitation.pk)
                return redirect("surveys:start", invitation_id=invitation.pk)
        status = 400
    else:
        initial = InstrumentForm.initial_from(saved.answers) if saved is not None else {}
        form = InstrumentForm(initial=initial, shown=shown)
    position = invitation.instruments.index(key) + 1
    context: dict[str, Any] = {
        "invitation": invitation,
        "participant": participant,
        "shown": shown,
        "form": form,
        "position": position,
        "total": len(invitation.instruments),
        "is_last": _next_key(invitation, {**latest, key: _Submitted()}) is None,
        "flagged": _flagged(latest),
        "crisis_resources": crisis_resources_html(invitation.study.protocol, participant.language),
    }
    return render(request, "surveys/instrument.html", context, status=status)


class _Submitted:
    """Stands in for this page's response when asking "is anything left after this one?"."""

    status = Response.Status.SUBMITTED


@participant_required
def survey_thanks(request: HttpRequest, invitation_id: int) -> HttpResponse:
    participant = request.participant
    invitation = selectors.invitation_for_participant(participant, invitation_id)
    if invitation.status != Invitation.Status.COMPLETED:
        return redirect("surveys:start", invitation_id=invitation.pk)
    latest = selectors.responses_by_instrument(invitation)
    flagged = _flagged(latest)
    return render(
        request,
        "surveys/thanks.html",
        {
            "invitation": invitation,
            "flagged": flagged,
            "crisis_resources": crisis_resources_html(
                invitation.study.protocol, participant.language
            )
            if flagged
            else "",
            "home_url": reverse("participants:home"),
        },
    )


@participant_required
@require_http_methods(["POST"])
def task_start(request: HttpRequest) -> HttpResponse:
    """The task card's button: a new conversation about today's task (the same one on a second
    click)."""
    try:
        conversation = daily_tasks.task_conversation_start(participant=request.participant)
    except daily_tasks.TaskError:
        # The day changed or the protocol stopped offering it since the card was shown.
        messages.info(request, _("There is no conversation task to start today."))
        return redirect("chat:list")
    return redirect("chat:conversation", conversation.pk)
