"""The voice endpoints of the chat page (voice arms): send a recording and stream the reply, and
fetch the reply's speech.

A recording is checked (type, size, length), transcribed off the database thread, then stored
and screened through the same service as typed text (services.message_send) and its reply
streamed through the same code as chat.views.message_reply. Every refusal is JSON the page
understands; when the transcript exists but the message could not be stored, the answer carries
the transcript so the page can put it in the text box: nothing the participant said is lost.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import get_object_or_404
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from studyplatform.participants.session import participant_gate, participant_required

from . import services
from .models import Conversation, Message
from .providers.audio import AudioError
from .speech_segments import MAX_SEGMENTS, segment_owner_message, segment_speak
from .streaming import db_round
from .views import (
    OUTAGE_ERRORS,
    TZ_OFFSET_LIMIT_MINUTES,
    _sent_then_reply,
    _unavailable,
    outage_as_json,
    refusal_response,
    sent_body,
)
from .voice import (
    Clip,
    VoiceConfig,
    VoiceRefused,
    clip_check,
    clip_keep,
    clip_transcribe,
    conversation_voice,
    keep_audio_allowed,
    max_upload_bytes,
    reply_speech,
    stt_client,
    tts_speaker,
)

logger = logging.getLogger(__name__)

# Slack over the file ceiling for the multipart framing and the small form fields.
MULTIPART_OVERHEAD = 64 * 1024
MAX_DECLARED_MS = 3_600_000

VOICE_ERRORS = {
    "not_voice": gettext_lazy("This conversation does not use voice. Please type your message."),
    "audio_missing": gettext_lazy("No recording arrived. Please hold the button and speak."),
    "audio_type": gettext_lazy(
        "This browser recorded in a format the study cannot use. Please type instead."
    ),
    "audio_unreadable": gettext_lazy("The recording could not be read. Please try again."),
    "audio_too_large": gettext_lazy("The recording is too large. Please send a shorter one."),
    "audio_too_long": gettext_lazy(
        "The recording is too long: at most %(limit)s seconds. Please send a shorter one."
    ),
    "duration_missing": gettext_lazy("The recording's length is missing. Please try again."),
    "bad_field": gettext_lazy("The request was not understood."),
    "stt_failed": gettext_lazy(
        "Your recording could not be transcribed, so it was not sent. Please try again, or "
        "type instead."
    ),
    "no_speech": gettext_lazy(
        "No words were heard in the recording. Please try again, or type instead."
    ),
    "not_speakable": gettext_lazy("This reply cannot be spoken."),
    "speech_limit": gettext_lazy("This reply has been played as often as allowed."),
    "tts_failed": gettext_lazy("The reply could not be spoken. Its text is shown above."),
    "segment_gone": gettext_lazy("This part of the reply can no longer be spoken."),
}


def voice_refusal(code: str, *, status: int, field: str = "", detail: str = "") -> JsonResponse:
    message = VOICE_ERRORS.get(code, VOICE_ERRORS["bad_field"])
    if code == "audio_too_long":
        message = message % {"limit": detail}
    body = {"error": str(message), "code": code}
    if field:
        body["field"] = field
    return JsonResponse(body, status=status)


def _int_field(request, name: str, *, low: int, high: int) -> int | None:
    raw = request.POST.get(name, "")
    if raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise VoiceRefused("bad_field", field=name) from None
    if not low <= value <= high:
        raise VoiceRefused("bad_field", field=name)
    return value


class _InMemoryUpload(MemoryFileUploadHandler):
    """Keeps the recording in memory whatever its size, never in a temporary file: a recording
    the participant did not agree to keep must not touch the disk. The view refuses bodies over
    VOICE_MAX_UPLOAD_BYTES before anything is parsed, which bounds the memory (and the settings
    keep bodies of that size out of the ASGI handler's spool file too)."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.activated = True


def _csrf_refusal(request) -> HttpResponse | None:
    """The CSRF check the middleware skipped (the view is csrf_exempt so that the body is
    parsed only after the upload handlers were replaced; the middleware reads request.POST)."""
    return CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})


def _voice_gate(request, conversation_id: int):
    """Everything before transcription, in one database round: who, which conversation, its
    voice arm, the recording checked. Returns a JsonResponse, or what transcription needs."""
    # Refuse an oversized body before Django parses it, then parse it in memory only.
    try:
        declared_length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared_length = 0  # Django's own parsing refuses a malformed length
    if declared_length > max_upload_bytes() + MULTIPART_OVERHEAD:
        return voice_refusal("audio_too_large", status=413, field="audio")
    request.upload_handlers = [_InMemoryUpload(request)]
    refused = _csrf_refusal(request)
    if refused is not None:
        return refused
    participant, elsewhere = participant_gate(request)
    if participant is None:
        return JsonResponse(
            {"error": _("Please sign in again to continue."), "redirect": elsewhere}, status=403
        )
    conversation = (
        Conversation.objects.select_related("arm", "participant__study")
        .filter(pk=conversation_id, participant=participant)
        .first()
    )
    if conversation is None:
        return JsonResponse({"error": _("That conversation was not found.")}, status=404)
    voice = conversation_voice(conversation)
    if voice is None:
        return voice_refusal("not_voice", status=400)
    try:
        client_request_id = request.POST.get("client_request_id", "")[:64]
        fields = {
            "client_request_id": client_request_id,
            "tz_offset_minutes": _int_field(
                request, "tz_offset", low=-TZ_OFFSET_LIMIT_MINUTES, high=TZ_OFFSET_LIMIT_MINUTES
            ),
        }
        declared_ms = _int_field(request, "duration_ms", low=0, high=MAX_DECLARED_MS)
        stored = services._stored_already(conversation, client_request_id)
        if stored is not None:
            # A retry of a recording that was already stored (the answer was lost): no second
            # transcription, no second message.
            return JsonResponse(
                {"message": {"id": stored.pk, "text": stored.content}, "stored": True},
                status=200,
            )
        upload = request.FILES.get("audio")
        if upload is None:
            raise VoiceRefused("audio_missing", field="audio")
        if upload.size > max_upload_bytes():
            raise VoiceRefused("audio_too_large", field="audio", status=413)
        clip = clip_check(
            audio=upload.read(),
            content_type=upload.content_type or "",
            declared_ms=declared_ms,
            voice=voice,
        )
        client = stt_client(voice)
    except VoiceRefused as exc:
        return voice_refusal(exc.code, status=exc.status, field=exc.field, detail=str(exc))
    except AudioError as exc:  # the endpoint is no longer registered or allowed
        logger.warning("transcription for conversation %s refused: %s", conversation_id, exc)
        return voice_refusal("stt_failed", status=502)
    return participant, conversation, voice, clip, client, fields, get_language() or ""


def _voice_store(participant, conversation, voice: VoiceConfig, clip: Clip, fields, transcript):
    """Store the transcript as the participant's message (screened like typed text), keep the
    recording when the consent allows it, and build the model request."""
    text, stt_ms = transcript
    try:
        result = services.message_send(
            participant=participant,
            conversation=conversation,
            text=text,
            voice=services.VoiceTurn(audio_ms=clip.duration_ms, stt_ms=stt_ms),
            **fields,
        )
    except services.ChatError as exc:
        # Not stored: the page puts the transcript in the text box, to send later or edit.
        return refusal_response(exc, transcript=text)
    body = sent_body(participant, result)
    if not result.created:
        return JsonResponse(body, status=200)
    if keep_audio_allowed(participant, voice):
        try:
            clip_keep(message=result.message, clip=clip)
        except Exception:
            # The message (the research record) is stored; a lost recording is logged, not
            # worth failing the participant's turn for.
            logger.exception("voice clip of message %s not kept", result.message.pk)
    model_request = services.build_request(
        user_message=result.message,
        arm=conversation.arm,
        participant=participant,
        history=result.history,
    )
    target = services.arm_target(conversation.arm)
    return body, (result.message, conversation.arm, model_request, target)


def _voice_store_guarded(participant, conversation, voice, clip, fields, transcript):
    try:
        return _voice_store(participant, conversation, voice, clip, fields, transcript)
    except services.ChatUnavailable as exc:
        if exc.message is not None:
            return _unavailable(exc.message)
    except OUTAGE_ERRORS:
        logger.exception("voice send failed: database or Redis outage")
    # Not stored: hand the transcript back so the participant keeps what they said.
    response = JsonResponse(
        {
            "error": _(
                "The study server is having a problem, so your message was not sent. What you "
                "said is in the text box; please send it again in a moment."
            ),
            "stored": False,
            "transcript": transcript[0],
            "code": "unavailable",
            "retryable": True,
        },
        status=503,
    )
    response["Retry-After"] = "5"
    return response


def _voice_gate_guarded(request, conversation_id: int):
    try:
        return _voice_gate(request, conversation_id)
    except OUTAGE_ERRORS:
        logger.exception("voice send to %s failed: database or Redis outage", conversation_id)
        return _unavailable(None)


@csrf_exempt  # checked in _voice_gate, after the in-memory upload handler is installed
@require_POST
async def message_voice(request, conversation_id: int):
    """Send a recording (multipart: audio, duration_ms, client_request_id, tz_offset) and
    stream the reply: Server-Sent Events starting with the stored message (its text is the
    transcript; crisis resources when the safety screen fired), then the reply's events, as
    message_reply does. Refusals are JSON 4xx/5xx naming the field at fault."""
    gate = await db_round(_voice_gate_guarded, request, conversation_id)
    if isinstance(gate, HttpResponse):  # a refusal (JSON, or the CSRF check's 403)
        return gate
    participant, conversation, voice, clip, client, fields, language = gate
    try:
        # Off the database thread: a transcription takes seconds and holds no connection.
        transcript, stt_ms = await sync_to_async(clip_transcribe, thread_sensitive=False)(
            client=client, voice=voice, clip=clip, language=language
        )
    except AudioError as exc:
        logger.warning("transcription for conversation %s failed: %s", conversation_id, exc)
        return voice_refusal("stt_failed", status=502)
    if not transcript.text:
        return voice_refusal("no_speech", status=422)
    outcome = await db_round(
        _voice_store_guarded,
        participant,
        conversation,
        voice,
        clip,
        fields,
        (transcript.text, stt_ms),
    )
    if isinstance(outcome, JsonResponse):
        return outcome
    body, prepared = outcome
    return _sent_then_reply(body, prepared, spoken=True)


@outage_as_json(sending=False)
@participant_required
@require_POST
def reply_speech_view(request, message_id: int):
    """The spoken reply (audio) of one of the participant's finished replies in a voice arm."""
    return _spoken(request, message_id, lambda reply, voice: reply_speech(reply=reply, voice=voice))


@outage_as_json(sending=False)
@participant_required
@require_POST
def segment_speech_view(request, sid: str, index: int):
    """The audio of one sentence of a voice reply while it streams (chat/speech_segments.py):
    the page names the stream and the sentence's index, never the text."""
    if index >= MAX_SEGMENTS:
        return voice_refusal("segment_gone", status=404)
    try:
        message_id = segment_owner_message(sid=sid, participant_id=request.participant.pk)
    except VoiceRefused as exc:
        return voice_refusal(exc.code, status=exc.status)
    return _spoken(
        request,
        message_id,
        lambda _message, voice: segment_speak(sid=sid, index=index, speak=tts_speaker(voice)),
    )


def _spoken(request, message_id: int, speak) -> HttpResponse:
    """``speak(message, voice)``'s audio for one of the participant's messages in a voice arm,
    or the refusal (404 for another participant's message or a text arm)."""
    message = get_object_or_404(
        Message.objects.select_related("conversation__arm", "conversation__participant__study"),
        pk=message_id,
        participant=request.participant,
    )
    voice = conversation_voice(message.conversation)
    if voice is None:
        return voice_refusal("not_voice", status=404)
    try:
        speech = speak(message, voice)
    except VoiceRefused as exc:
        return voice_refusal(exc.code, status=exc.status)
    except AudioError as exc:
        logger.warning("speech for message %s failed: %s", message.pk, exc)
        return voice_refusal("tts_failed", status=502)
    response = HttpResponse(speech.audio, content_type=speech.content_type)
    response["Cache-Control"] = "no-store"
    if speech.duration_ms is not None:
        response["X-Audio-Duration-Ms"] = str(speech.duration_ms)
    return response
