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
# The participant's study, beside their id: the chat send begins its Redis reads (the study's
# gate token among them) before it loads the participant (chat.views). A participant's study
# never changes; a session without it (signed in before it was kept) gets it at the next gate.
SESSION_STUDY_KEY = "participant_study_id"
# When this browser last proved it is the participant with a secret (an emailed one-time link,
# the personal return link, or enrolling right here); sensitive changes such as setting a
# password without the current one need it to be recent.
FRESH_KEY = "participant_fresh_at"
# The gate this session last passed in full, as [participant id, participant language, the
# participant's gate token, the study's gate token] (core.gate_epoch). Checking consent
# costs two queries (the study's consent documents, the participant's latest record) on every
# chat send; while this entry matches, one Redis MGET replaces them. Everything that can change
# the answer replaces a token: withdrawal and consent records (the participant's), a new
# protocol version and every study status change (the study's). The language is in the entry
# because it picks the consent document. Withdrawal and study status are also read from the
# participant row on every request, and a withdrawn participant's message is refused by the
# INSERT's own transaction (chat.services), whatever was cached.
GATE_KEY = "participant_gate"


def participant_login(request, participant: Participant, *, fresh: bool = False) -> None:
    """Sign the participant in to this browser. Only ever call this after the person proved it
    with a secret (link, return link, password) or just enrolled: never for a panel id."""
    request.session.cycle_key()  # no session fixation across the sign-in
    request.session[SESSION_KEY] = participant.pk
    request.session[SESSION_STUDY_KEY] = participant.study_id
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
    request,
    *,
    consent: bool = True,
    allow_withdrawn: bool = False,
    participant: Participant | None = None,
    gate_tokens: list[str | None] | None = None,
) -> tuple[Participant | None, str]:
    """The signed-in participant allowed through, or None and where to send the person instead.

    With `consent=True` (the default) nothing happens until the current consent version is
    signed: a new consent version blocks chat and surveys until re-consent. `participant`: the
    session's participant when the caller already loaded it (with its study) in a query of its
    own (the chat send loads it with the conversation); it must be the session's.
    `gate_tokens`: the participant's and the study's gate tokens when the caller read them
    already (the chat send reads them with its rate counter, in one Redis round trip).
    """
    from django.urls import reverse

    if participant is None:
        participant = current_participant(request)
    elif participant.pk != request.session.get(SESSION_KEY):
        participant = None
    if participant is None:
        return None, reverse("participants:signin") + f"?next={request.path}"
    if participant.status == Participant.Status.WITHDRAWN and not allow_withdrawn:
        request.session.pop(GATE_KEY, None)
        return None, reverse("participants:withdrawn")
    if consent and participant.is_active and _consent_due(request, participant, gate_tokens):
        return None, reverse("participants:consent_renew")
    now = timezone.now()
    if not participant.last_seen_at or now - participant.last_seen_at > dt.timedelta(minutes=5):
        Participant.objects.filter(pk=participant.pk).update(last_seen_at=now)
    if request.session.get(SESSION_STUDY_KEY) != participant.study_id:
        request.session[SESSION_STUDY_KEY] = participant.study_id
    return participant, ""


def _consent_due(request, participant: Participant, read: list[str | None] | None) -> bool:
    """Whether the participant must (re-)sign consent first: the session's cached answer while
    both gate tokens are unchanged, else the database's (then cached under the tokens read
    before it, so a bump racing the check leaves the entry already stale)."""
    from redis.exceptions import RedisError

    from studyplatform.core.gate_epoch import gate_tokens

    from .services import consent_due

    if read is not None and None not in read:
        tokens = read  # read by the caller (a missing token is created below, by gate_tokens)
    else:
        try:
            tokens = gate_tokens(participant.pk, participant.study_id)
        except RedisError:
            tokens = None  # no cache without Redis: the database answers every time
    entry = [participant.pk, participant.language, *(tokens or ())]
    if tokens and None not in tokens and request.session.get(GATE_KEY) == entry:
        return False
    if consent_due(participant):
        request.session.pop(GATE_KEY, None)
        return True
    if tokens and None not in tokens:
        request.session[GATE_KEY] = entry
    else:
        request.session.pop(GATE_KEY, None)
    return False


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
