"""Participant chat pages (conversations, memory, importing ChatGPT history) and the JSON/SSE
endpoints the small chat script talks to.

Every view works only on the signed-in participant's own conversations: another participant's
conversation or message id is a 404.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import secrets
from datetime import timedelta

from csp.decorators import csp_update
from django import forms
from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from redis.exceptions import RedisError

from studyplatform.core import input_limits
from studyplatform.core.events import ParticipantChatRequested, publish
from studyplatform.core.markdown import render_markdown
from studyplatform.core.redis_client import redis_sync
from studyplatform.core.sessions import SessionStore
from studyplatform.core.sse import EventStreamResponse
from studyplatform.participants.session import (
    SESSION_KEY,
    participant_gate,
    participant_required,
)
from studyplatform.safety.selectors import conversation_alerted_since
from studyplatform.safety.services import crisis_resources_html

from . import send_load, services, streaming
from .importers import ImportFormatError, Limits
from .importing import ImportRefused, chatgpt_import, chatgpt_import_refusal
from .models import Conversation, Message
from .streaming import cancel_key, reply_events, sse
from .voice import conversation_voice

logger = logging.getLogger(__name__)

STREAM_TOKEN_TTL_S = 120
# The platform's own backing services: their failure is an outage (503, retry), not a bug page.
OUTAGE_ERRORS = (DatabaseError, RedisError)

ERRORS = {
    "empty": gettext_lazy("Write a message first."),
    "too_long": gettext_lazy(
        "That message is too long. Please shorten it to %(limit)s characters."
    ),
    "rate_limited": gettext_lazy(
        "You are sending messages very quickly. Please wait a minute and try again."
    ),
    "daily_tokens": gettext_lazy(
        "You have reached today's chat limit for this study. You can chat again tomorrow."
    ),
    "not_found": gettext_lazy("That conversation was not found."),
    "study_closed": gettext_lazy("This study has ended, so its chat is closed."),
    "withdrawn": gettext_lazy("You have left this study, so its chat is closed."),
}
# Refusals that are not about the request itself: the participant may not send at all.
FORBIDDEN_CODES = ("study_closed", "withdrawn")


def _unavailable(stored: Message | None = None, *, sending: bool = True) -> JsonResponse:
    """The answer to a send (or stop/retry) that a database or Redis outage stopped: a 503 the
    chat script understands, saying whether the participant's message was stored. A retry
    with the same client request id stores it at most once either way."""
    body: dict
    if stored is not None:
        body = {
            "error": _(
                "Your message was saved, but the reply could not start because the study "
                "server is having a problem. Please try again in a moment."
            ),
            "stored": True,
            "message": {"id": stored.pk, "text": stored.content},
            "retry_url": reverse("chat:regenerate", args=[stored.pk]),
        }
    elif not sending:  # stop, retry: nothing of the participant's is at stake
        body = {"error": _("The study server is having a problem. Please try again in a moment.")}
    else:
        body = {
            "error": _(
                "The study server is having a problem, so your message was not sent. It is "
                "kept here; please try again in a moment."
            ),
            "stored": False,
        }
    body.update(code="unavailable", retryable=True)
    response = JsonResponse(body, status=503)
    response["Retry-After"] = "5"
    return response


def outage_as_json(*, sending: bool):
    """Answer a database or Redis outage in a chat JSON endpoint with _unavailable(), never
    Django's HTML error page (which the chat script cannot read). Outermost, so that the
    participant check's own queries are covered. `sending`: the endpoint stores a message."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                return view(request, *args, **kwargs)
            except services.ChatUnavailable as exc:
                return _unavailable(exc.message)
            except OUTAGE_ERRORS:
                logger.exception("chat endpoint %s failed: database or Redis outage", request.path)
                return _unavailable(None, sending=sending)

        return wrapped

    return decorate


def _own_conversation(participant, conversation_id: int) -> Conversation:
    return get_object_or_404(
        Conversation.objects.select_related("arm"), pk=conversation_id, participant=participant
    )


def _own_message(participant, message_id: int) -> Message:
    return get_object_or_404(
        Message.objects.select_related("conversation"), pk=message_id, participant=participant
    )


def _stream_url(user_message: Message) -> str:
    """A one-time, short-lived token authorising one reply stream for this message.

    It is issued only to the signed-in, consented participant who owns the message, so the
    stream endpoint needs no session or consent queries of its own (they cost a third of the
    time to first token); consuming it makes one click exactly one upstream call.
    """
    token = secrets.token_urlsafe(16)
    redis_sync().set(f"chat:stream:{token}", user_message.pk, ex=STREAM_TOKEN_TTL_S)
    return reverse("chat:stream", args=[user_message.pk]) + f"?t={token}"


@participant_required
def conversation_list(request):
    participant = request.participant
    conversations = participant.conversations.order_by("-updated_at")[:200]
    return render(
        request,
        "chat/list.html",
        {
            "participant": participant,
            "conversations": conversations,
            "simulated": participant.allocation.arm.is_simulated,
            "can_import": (
                participant.consent_records.order_by("-signed_at").first().allows("import_history")
            ),
            **_page_sections(participant),
        },
    )


def _page_sections(participant) -> dict:
    """What higher apps add to the chat pages (surveys: today's conversation task), which chat
    cannot import."""
    context: dict = {}
    for section in publish(ParticipantChatRequested(participant=participant)):
        context.update(section)
    return context


@participant_required
@require_POST
def conversation_new(request):
    conversation = services.conversation_create(participant=request.participant)
    return redirect("chat:conversation", conversation.pk)


def _message_view(m: Message, siblings: dict[int, list[int]]) -> dict:
    group = siblings.get(m.parent_id, [m.pk]) if m.role == Message.Role.ASSISTANT else [m.pk]
    return {
        "id": m.pk,
        "role": m.role,
        "status": m.status,
        "imported": m.imported,
        "html": render_markdown(m.content) if m.role == Message.Role.ASSISTANT else None,
        "text": m.content,
        "created_at": m.created_at,
        "sibling_index": group.index(m.pk) + 1 if m.pk in group else 1,
        "sibling_count": len(group),
        "prev_sibling": group[group.index(m.pk) - 1]
        if m.pk in group and group.index(m.pk)
        else None,
        "next_sibling": group[group.index(m.pk) + 1]
        if m.pk in group and group.index(m.pk) + 1 < len(group)
        else None,
    }


# A voice arm plays each spoken reply from a blob: URL the page made from the fetched audio
# (chat/voice.js); blob URLs come only from this page's own scripts.
@csp_update({"media-src": ["'self'", "blob:"]})
@participant_required
def conversation_detail(request, conversation_id: int):
    participant = request.participant
    # The send's own read (the conversation with its arm, participant and study), so that this
    # process keeps the row and the participant's first send here reads nothing before it
    # stores (send_load.send_cache).
    conversation = send_load.conversation_for_send(conversation_id, participant.pk)
    if conversation is None:
        raise Http404
    path = services.branch_path(conversation.active_leaf)
    siblings: dict[int, list[int]] = {}
    for mid, parent in (
        Message.objects.filter(conversation=conversation, role=Message.Role.ASSISTANT)
        .order_by("created_at", "id")
        .values_list("id", "parent_id")
    ):
        siblings.setdefault(parent, []).append(mid)
    full = {m.pk: m for m in Message.objects.filter(pk__in=[m.pk for m in path])}
    # Crisis resources stay on screen for a day after a message in this conversation raised an
    # alert, not only until the page reloads.
    recent_alert = conversation_alerted_since(
        conversation.pk, since=timezone.now() - timedelta(days=1)
    )
    messages_ = [
        _message_view(full[m.pk], siblings)
        for m in path
        if m.role in (Message.Role.USER, Message.Role.ASSISTANT)
    ]
    return render(
        request,
        "chat/conversation.html",
        {
            "participant": participant,
            "conversation": conversation,
            "chat_messages": messages_,
            "simulated": conversation.arm.is_simulated,
            # A voice arm's page adds push-to-talk (chat/_voice.html); None for text arms.
            "voice": conversation_voice(conversation),
            "limits": services.limits_for(participant),
            "crisis_html": crisis_resources_html(participant.study.protocol, get_language())
            if recent_alert
            else "",
            **_page_sections(participant),
            "chat_strings": {
                "interrupted": _(
                    "The reply was interrupted. Your message is saved; you can retry."
                ),
                "network": _(
                    "Could not reach the study server. Your message is kept here; press "
                    "Send to try again."
                ),
                "stopped": _("Stopped."),
                "internal": str(streaming.INTERNAL_ERROR_TEXT),
                "retry": _("Retry"),
            },
        },
    )


# UTC-12:00 to UTC+14:00 are the offsets in use; a little slack either side.
TZ_OFFSET_LIMIT_MINUTES = 16 * 60
# A message longer than any study's limit is refused before the service runs (which then
# applies the study's own, lower limit with its friendlier message).
TEXT_CEILING_CHARS = 100_000


@dataclasses.dataclass(frozen=True)
class _SendInput:
    text: str
    client_request_id: str
    tz_offset: int | None


def _send_input(request) -> _SendInput | JsonResponse:
    """The JSON body of a send, checked field by field: a 400 naming the field, never a 500."""
    try:
        payload = input_limits.loads(request.body or b"{}")
        if not isinstance(payload, dict):
            raise input_limits.InputRejected("", "must be a JSON object")
        return _SendInput(
            text=input_limits.optional_str(payload, "text", max_length=TEXT_CEILING_CHARS),
            client_request_id=input_limits.optional_str(
                payload, "client_request_id", max_length=64
            ),
            tz_offset=input_limits.optional_int(
                payload,
                "tz_offset",
                minimum=-TZ_OFFSET_LIMIT_MINUTES,
                maximum=TZ_OFFSET_LIMIT_MINUTES,
            ),
        )
    except input_limits.InputRejected as exc:
        body = {"error": _("The request was not understood."), "detail": str(exc)}
        if exc.path:
            body["field"] = exc.path
        return JsonResponse(body, status=400)


def _store(
    request,
    participant,
    conversation,
    counters: services.SendCounters | None = None,
    fingerprint: str | None = None,
) -> tuple[services.SendResult, dict] | JsonResponse:
    """Store the participant's message from the JSON request body (services.message_send) and
    describe it for the page, or say as JSON why not."""
    sent = _send_input(request)
    if isinstance(sent, JsonResponse):
        return sent
    try:
        result = services.message_send(
            participant=participant,
            conversation=conversation,
            text=sent.text,
            client_request_id=sent.client_request_id,
            tz_offset_minutes=sent.tz_offset,
            counters=counters,
            fingerprint=fingerprint,
        )
    except services.ChatError as exc:
        return refusal_response(exc)
    return result, sent_body(participant, result)


def refusal_response(exc: services.ChatError, **extra) -> JsonResponse:
    """The JSON answer to a send the chat service refused (also used by the voice send)."""
    message = ERRORS.get(exc.code, ERRORS["not_found"])
    if exc.code == "too_long":
        message = message % {"limit": str(exc)}
    status = 429 if exc.code in ("rate_limited", "daily_tokens") else 400
    if exc.code in FORBIDDEN_CODES:
        status = 403
    return JsonResponse({"error": str(message), "code": exc.code, **extra}, status=status)


def sent_body(participant, result: services.SendResult) -> dict:
    """The page's description of a stored message: its text, and crisis resources when the
    safety screen fired on it."""
    body = {"message": {"id": result.message.pk, "text": result.message.content}}
    if result.crisis:
        body["crisis"] = {
            "html": crisis_resources_html(participant.study.protocol, get_language()),
            **result.crisis,
        }
    return body


@outage_as_json(sending=True)
@participant_required
@require_POST
def message_send(request, conversation_id: int):
    """Store a message and answer with a one-time URL for its reply stream (for API clients;
    the chat page uses message_reply, which does both in one request)."""
    participant = request.participant
    stored = _store(request, participant, _own_conversation(participant, conversation_id))
    if isinstance(stored, JsonResponse):
        return stored
    result, body = stored
    if result.created:
        try:
            body["stream"] = _stream_url(result.message)
        except RedisError:
            logger.exception("stream token for message %s not issued", result.message.pk)
            return _unavailable(result.message)
    return JsonResponse(body, status=201 if result.created else 200)


def _reply_prepare(request, conversation_id: int):
    """Everything before the model call, in one trip to the database thread: the participant
    gate, the conversation, storing the message (committed before the upstream call), the
    model request. Returns a JsonResponse when there is nothing to stream (a 503 saying
    whether the message was stored when the database or Redis is down)."""
    committed: list[Message] = []  # the stored message, once committed (for the 503's answer)
    try:
        return _reply_prepare_steps(request, conversation_id, committed)
    except services.ChatUnavailable as exc:
        return _unavailable(exc.message)
    except OUTAGE_ERRORS:
        logger.exception(
            "send to conversation %s failed: database or Redis outage", conversation_id
        )
        return _unavailable(committed[0] if committed else None)


def _send_reads(request, conversation_id: int):
    """The send's reads before the participant gate: the session's participant, their study
    and the conversation in one database query (the gate's own participant query was a fifth
    of the work before the model call; the gate then checks that row), and the session with
    the gate's tokens and the send's counters in one Redis round trip, begun before that query
    and read after it, so that the two overlap (each was ~0.4 ms of the send on a mostly idle
    server). Returns (conversation or None when it is not the session participant's, the
    SendCounters or None, the kept row's fingerprint or None).

    The conversation is the row this process kept from its last read when there is one
    (send_load.send_cache): no query at all, and the fingerprint goes with it to the statement
    that stores the message, which stores nothing if the rows have changed since
    (_reply_prepare_steps then reads them again).

    Only when the conversation is None does the gate load the participant itself, to tell
    "sign in again" or "withdrawn" from "no such conversation". A Redis failure is met again
    later: the session is read from the database, the gate reads its own tokens, and the rate
    check answers "not stored"."""
    session = request.session
    now = timezone.now()
    copy_key = session.unread_copy_key() if isinstance(session, SessionStore) else None
    pending = None
    if copy_key is not None:
        with contextlib.suppress(RedisError):
            pending = services.session_counters_begin(copy_key, now)
    fingerprint = None
    try:
        # Read before the session is (a cookie without a session reads nothing): whoever's it
        # is, compared with the session's participant below.
        conversation = None
        if session.session_key is not None:
            kept = send_load.kept_conversation_for_send(conversation_id)
            if kept is not None:
                conversation, fingerprint = kept
            else:
                conversation = send_load.conversation_for_send(conversation_id, None)
    except BaseException:
        if pending is not None:
            pending.discard()
        raise
    read = None
    if pending is not None:
        with contextlib.suppress(RedisError):
            read = pending.result()
        if read is not None and read.session_copy is not None:
            session.take_copy(read.session_copy)
    session_participant = session.get(SESSION_KEY)
    if not isinstance(session_participant, int) or conversation is None:
        return None, None, None
    if conversation.participant_id != session_participant:
        return None, None, None  # not theirs: the same answer as no such conversation
    counters = read.counters if read is not None else None
    if counters is not None and read.participant_id != session_participant:
        counters = None  # a session the script read differently: read them again below
    if counters is not None and read.study_id != conversation.participant.study_id:
        # Not the participant's study (it never changes; a hand-made session): the gate
        # reads its own tokens.
        counters = dataclasses.replace(counters, gate_tokens=None)
    if counters is None:
        with contextlib.suppress(RedisError):
            counters = services.send_counters(conversation.participant, now)
    return conversation, counters, fingerprint


class _Reread(Exception):
    """The send was checked against a kept row and must be decided again on a fresh read."""


def _reply_prepare_steps(request, conversation_id: int, committed: list[Message]):
    conversation, counters, fingerprint = _send_reads(request, conversation_id)
    if fingerprint is not None:
        try:
            return _reply_prepare_on(request, conversation, counters, fingerprint, committed)
        except _Reread:
            # Nothing was stored; the send's counters were taken once and stay as they are.
            send_load.send_cache.forget(conversation_id)
            conversation = send_load.conversation_for_send(
                conversation_id, request.session.get(SESSION_KEY)
            )
    return _reply_prepare_on(request, conversation, counters, None, committed)


def _reply_prepare_on(request, conversation, counters, fingerprint, committed: list[Message]):
    """The gate, the checks and the store on `conversation`; with the kept row's `fingerprint`,
    anything but a stored message raises _Reread (a refusal is only ever given on fresh rows)."""
    participant, elsewhere = participant_gate(
        request,
        participant=conversation.participant if conversation is not None else None,
        gate_tokens=counters.gate_tokens if counters is not None else None,
    )
    if participant is None:
        if fingerprint is not None:
            raise _Reread
        return JsonResponse(
            {"error": _("Please sign in again to continue."), "redirect": elsewhere}, status=403
        )
    if conversation is None:
        return JsonResponse({"error": str(ERRORS["not_found"])}, status=404)
    try:
        stored = _store(request, participant, conversation, counters, fingerprint)
    except services.StaleConversation:
        raise _Reread from None
    if isinstance(stored, JsonResponse):
        if fingerprint is not None and stored.status_code != 400:
            raise _Reread  # a refusal on the kept row (400: the request's own body)
        return stored
    result, body = stored
    if not result.created:
        # The same click arrived twice (a network retry): the message is stored once and its
        # reply was already requested; the page offers "retry" instead of a second call.
        return JsonResponse(body, status=200)
    committed.append(result.message)
    model_request = services.build_request(
        user_message=result.message,
        arm=conversation.arm,
        participant=participant,
        history=result.history,
    )
    target = services.arm_target(conversation.arm)
    return body, (result.message, conversation.arm, model_request, target)


def _sent_then_reply(body: dict, prepared: tuple, *, spoken: bool = False) -> EventStreamResponse:
    """The send's event stream: the `message` event (the stored message), then the reply
    (`spoken`: a voice turn, whose reply is also spoken sentence by sentence)."""
    return EventStreamResponse(
        reply_events(prepared[0].pk, attempt_claimed=True, prepared=prepared, spoken=spoken),
        prelude=sse("message", body),
    )


@require_POST
def message_reply(request, conversation_id: int):
    """Send a message and stream its reply in the same request: the response is Server-Sent
    Events starting with a `message` event (the stored message, crisis resources if the safety
    detector fired), then the reply's events. Errors before anything is stored are JSON 4xx.

    One request instead of send + stream saves the participant a round trip and the server a
    second session/consent check. The view is synchronous: the whole pre-model part runs in the
    request's thread together with the middleware (core/sse.py's handler enters that thread
    once), and only the reply streams from the event loop.
    """
    outcome = _reply_prepare(request, conversation_id)
    if isinstance(outcome, JsonResponse):
        return outcome
    body, prepared = outcome
    return _sent_then_reply(body, prepared)


@require_GET
def stream(request, user_message_id: int):
    """Server-Sent Events carrying the reply. Needs the one-time token from send/regenerate;
    a missing, used or foreign token is a 404 and never reaches the model."""
    token = request.GET.get("t", "")
    claimed = False
    if token:
        try:
            value = redis_sync().getdel(f"chat:stream:{token}")
        except RedisError:
            logger.exception(
                "stream token for message %s not checked: Redis outage", user_message_id
            )
            return _unavailable(None, sending=False)
        claimed = value is not None and int(value) == user_message_id
    if not claimed:
        raise Http404("This reply link is not valid (any more).")
    return EventStreamResponse(reply_events(user_message_id, attempt_claimed=True))


@outage_as_json(sending=False)
@participant_required
@require_POST
def stream_stop(request, user_message_id: int):
    _own_message(request.participant, user_message_id)
    redis_sync().set(cancel_key(user_message_id), "1", ex=300)
    return JsonResponse({"stopping": True})


@outage_as_json(sending=False)
@participant_required
@require_POST
def regenerate(request, message_id: int):
    """A new reply to the same participant message, kept as a sibling branch (also "retry")."""
    message = _own_message(request.participant, message_id)
    user_message = message if message.role == Message.Role.USER else message.parent
    if user_message is None or user_message.role != Message.Role.USER:
        raise Http404
    return JsonResponse({"stream": _stream_url(user_message)})


@participant_required
@require_POST
def activate(request, message_id: int):
    """Show another branch: make this reply (and its latest descendants) the active branch."""
    message = _own_message(request.participant, message_id)
    leaf = message
    while True:
        child = leaf.children.order_by("-created_at", "-id").first()
        if child is None:
            break
        leaf = child
    Conversation.objects.filter(pk=message.conversation_id).update(active_leaf=leaf)
    return redirect("chat:conversation", message.conversation_id)


@participant_required
@require_http_methods(["GET", "POST"])
def memory(request):
    participant = request.participant
    if request.method == "POST":
        services.memory_save(participant=participant, text=request.POST.get("text", ""))
        from django.contrib import messages as flash

        flash.success(request, _("Saved. The assistant will see these notes in new replies."))
        return redirect("chat:memory")
    return render(request, "chat/memory.html", {"text": services.memory_text(participant)})


# --- importing ChatGPT history ----------------------------------------------------------------
# The participant's "import my ChatGPT history" page: an upload form that calls the import
# service (importing.py), and says plainly when the participant's consent does not cover
# importing.


IMPORT_DEFAULT_MAX_BYTES = 50 * 1024 * 1024
IMPORT_TEMPLATE = "chat/import.html"


def max_upload_bytes() -> int:
    return getattr(settings, "CHAT_IMPORT_MAX_BYTES", IMPORT_DEFAULT_MAX_BYTES)


class ImportForm(forms.Form):
    export = forms.FileField(
        label=gettext_lazy("Your ChatGPT export (.zip or conversations.json)"),
        widget=forms.ClearableFileInput(
            attrs={"accept": ".zip,.json,application/zip,application/json"}
        ),
    )

    def clean_export(self):
        upload = self.cleaned_data["export"]
        limit = max_upload_bytes()
        # Checked here as well as by the parser, so the message names this page's limit.
        if upload.size > limit:
            raise forms.ValidationError(
                _("The file is larger than the %(limit)s upload limit.")
                % {"limit": filesizeformat(limit)},
                code="too_large",
            )
        return upload


@participant_required
@require_http_methods(["GET", "POST"])
def import_history(request: HttpRequest) -> HttpResponse:
    participant = request.participant
    refusal = chatgpt_import_refusal(participant)
    context = {
        "participant": participant,
        "refusal": refusal.code if refusal else "",
        "max_bytes": max_upload_bytes(),
    }
    if refusal is not None:
        # No form at all: the consent (or status) does not allow importing.
        status = 403 if request.method == "POST" else 200
        return render(request, IMPORT_TEMPLATE, context, status=status)
    if request.method == "GET":
        return render(request, IMPORT_TEMPLATE, {**context, "form": ImportForm()})
    # Bound even when the POST is empty, so a missing file is reported, not ignored.
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        too_large = any(e.code == "too_large" for e in form.errors.as_data().get("export", []))
        return render(
            request, IMPORT_TEMPLATE, {**context, "form": form}, status=413 if too_large else 400
        )
    upload = form.cleaned_data["export"]
    upload.seek(0)
    try:
        result = chatgpt_import(
            participant=participant,
            source=upload.file,
            limits=Limits(max_upload_bytes=max_upload_bytes()),
        )
    except ImportFormatError as exc:
        context.update(form=ImportForm(), format_error=str(exc))
        return render(request, IMPORT_TEMPLATE, context, status=400)
    except ImportRefused as exc:  # withdrawn or consent changed since the page loaded
        context.update(refusal=exc.code)
        return render(request, IMPORT_TEMPLATE, context, status=403)
    # Rendered, not redirected: a repeated POST is harmless because re-importing the
    # same export only skips what is already there.
    context.update(result=result)
    return render(request, IMPORT_TEMPLATE, context)
