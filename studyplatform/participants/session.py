"""The participant session: separate from researcher accounts, so participants never reach
researcher pages, and long-lived for daily use on a phone."""

from __future__ import annotations

import datetime as dt
import functools
import time

from django.conf import settings
from django.shortcuts import redirect
from django.utils import timezone, translation

from .models import Participant

SESSION_KEY = "participant_id"
# When this browser last proved it is the participant with a secret (an emailed one-time link,
# the personal return link, or enrolling right here); sensitive changes such as setting a
# password without the current one need it to be recent.
FRESH_KEY = "participant_fresh_at"
# The consent check this session last passed, as [participant id, study's current protocol
# version id, participant language]. Checking consent costs two queries (the study's consent
# documents, the participant's latest record) on every chat send; this entry skips them while
# nothing it depends on changed. It can never let a stale answer through: a new consent version
# only ever arrives with a new protocol version (studies.services._sync_consent), the language
# picks the document, and all three are re-read from the participant row loaded on every
# request anyway. Withdrawal and study status are read from that same row, never cached.
CONSENT_OK_KEY = "participant_consent_ok"


def participant_login(request, participant: Participant, *, fresh: bool = False) -> None:
    """Sign the participant in to this browser. Only ever call this after the person proved it
    with a secret (link, return link, password) or just enrolled: never for a panel id."""
    request.session.cycle_key()  # no session fixation across the sign-in
    request.session[SESSION_KEY] = participant.pk
    if fresh:
        request.session[FRESH_KEY] = int(time.time())
    else:
        request.session.pop(FRESH_KEY, None)
    request.session.set_expiry(settings.PARTICIPANT_SESSION_AGE_S)
    translation.activate(participant.language)


def signed_in_recently(request) -> bool:
    """True within PARTICIPANT_FRESH_SIGNIN_S of a sign-in through a one-time secret."""
    at = request.session.get(FRESH_KEY)
    return bool(at) and time.time() - at <= settings.PARTICIPANT_FRESH_SIGNIN_S


def participant_logout(request) -> None:
    request.session.flush()


def current_participant(request) -> Participant | None:
    pk = request.session.get(SESSION_KEY)
    if not pk:
        return None
    return (
        Participant.objects.select_related("study", "study__current_version").filter(pk=pk).first()
    )


def participant_gate(
    request, *, consent: bool = True, allow_withdrawn: bool = False
) -> tuple[Participant | None, str]:
    """The signed-in participant allowed through, or None and where to send the person instead.

    With `consent=True` (the default) nothing happens until the current consent version is
    signed: a new consent version blocks chat and surveys until re-consent.
    """
    from django.urls import reverse

    from .services import consent_due

    participant = current_participant(request)
    if participant is None:
        return None, reverse("participants:signin") + f"?next={request.path}"
    if participant.status == Participant.Status.WITHDRAWN and not allow_withdrawn:
        return None, reverse("participants:withdrawn")
    if consent and participant.is_active and not _consent_ok_cached(request, participant):
        if consent_due(participant):
            request.session.pop(CONSENT_OK_KEY, None)
            return None, reverse("participants:consent_renew")
        request.session[CONSENT_OK_KEY] = _consent_fingerprint(participant)
    now = timezone.now()
    if not participant.last_seen_at or now - participant.last_seen_at > dt.timedelta(minutes=5):
        Participant.objects.filter(pk=participant.pk).update(last_seen_at=now)
    return participant, ""


def _consent_fingerprint(participant: Participant) -> list:
    return [participant.pk, participant.study.current_version_id, participant.language]


def _consent_ok_cached(request, participant: Participant) -> bool:
    return request.session.get(CONSENT_OK_KEY) == _consent_fingerprint(participant)


def participant_required(view=None, *, consent: bool = True, allow_withdrawn: bool = False):
    """Load `request.participant` or send the person to sign in (see participant_gate)."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(request, *args, **kwargs):
            participant, elsewhere = participant_gate(
                request, consent=consent, allow_withdrawn=allow_withdrawn
            )
            if participant is None:
                return redirect(elsewhere)
            request.participant = participant
            return func(request, *args, **kwargs)

        return wrapper

    return decorate(view) if view else decorate
