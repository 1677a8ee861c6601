"""Voice arms: checking a recorded clip, transcribing it, keeping it (only with consent),
speaking a reply, and deleting kept recordings.

The spoken turn joins the typed path right after transcription: the transcript is stored and
safety-screened by services.message_send (with a VoiceTurn carrying the recording's measures)
and the reply streams exactly as for typed text. Its speech is made sentence by sentence while it
streams (chat/speech_segments.py), or for the whole reply on request once its text is complete
(a replay; docs/protocol.md, Voice arms).

Recordings are never written to disk unless the participant's consent ticked the arm's
`keep_audio_checkbox`; then they are stored encrypted (core/filecrypt.py) under
MEDIA_ROOT/voice/. Without it the bytes live only in the request's memory and are gone when the
transcription returns.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from studyplatform.core.filecrypt import encrypt_to_path
from studyplatform.core.model_endpoints import EndpointUnavailable, endpoint_resolve
from studyplatform.participants.models import Participant
from studyplatform.studies.protocol.voice import DEFAULT_MAX_SECONDS, arm_voice

from .models import Conversation, Message, VoiceClip
from .providers.audio import AudioError, AudioTimeouts, Speech, Transcript, audio_client
from .providers.audio import wav_duration_ms as _wav_ms

logger = logging.getLogger(__name__)

VOICE_DIR = "voice"
# What browsers' MediaRecorder produces (webm/ogg opus, mp4 aac) and what a WAV upload is.
ACCEPTED_TYPES = {
    "audio/webm": "webm",
    "audio/ogg": "ogg",
    "audio/mp4": "mp4",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
}
# A spoken reply may be requested a few times (replay, a dropped connection), not without end:
# each request is a paid model call.
MAX_SPEECH_REQUESTS_PER_REPLY = 5


class VoiceRefused(ValueError):
    """A recording or speech request that cannot be served; `code` maps to a translated
    message, `field` names the request field at fault, `status` is the HTTP answer."""

    def __init__(self, code: str, *, field: str = "", status: int = 400, detail: str = ""):
        super().__init__(detail or code)
        self.code = code
        self.field = field
        self.status = status


@dataclass(frozen=True)
class VoiceConfig:
    stt_endpoint: str
    stt_model: str
    tts_endpoint: str
    tts_model: str
    tts_voice: str
    tts_speed: float | None
    max_seconds: int
    keep_audio_checkbox: str

    @classmethod
    def from_protocol(cls, block: dict[str, Any]) -> VoiceConfig:
        return cls(
            stt_endpoint=block["stt"]["endpoint"],
            stt_model=block["stt"]["name"],
            tts_endpoint=block["tts"]["endpoint"],
            tts_model=block["tts"]["name"],
            tts_voice=block["tts"]["voice"],
            tts_speed=block["tts"].get("speed"),
            max_seconds=int(block.get("max_seconds", DEFAULT_MAX_SECONDS)),
            keep_audio_checkbox=block.get("keep_audio_checkbox", ""),
        )


@dataclass(frozen=True)
class Clip:
    """A checked recording, in memory only."""

    audio: bytes
    content_type: str
    duration_ms: int


def conversation_voice(conversation: Conversation) -> VoiceConfig | None:
    """The voice configuration of the conversation's arm in the study's current protocol, or
    None for a text arm."""
    block = arm_voice(conversation.participant.study.protocol, conversation.arm.key)
    return VoiceConfig.from_protocol(block) if block else None


def max_upload_bytes() -> int:
    return int(getattr(settings, "VOICE_MAX_UPLOAD_BYTES", 8 * 1024 * 1024))


def clip_check(
    *, audio: bytes, content_type: str, declared_ms: int | None, voice: VoiceConfig
) -> Clip:
    """The recording, checked: a type browsers record, within the size ceiling, and no longer
    than the arm's max_seconds. A WAV's length is read from its header; for compressed formats
    (whose browser recordings carry no reliable length) the page's measured length is used,
    and must be plausible for the file's size."""
    kind = content_type.split(";")[0].strip().lower()
    if kind not in ACCEPTED_TYPES:
        raise VoiceRefused("audio_type", field="audio", status=415)
    if not audio:
        raise VoiceRefused("audio_missing", field="audio")
    if len(audio) > max_upload_bytes():
        raise VoiceRefused("audio_too_large", field="audio", status=413)
    limit_ms = voice.max_seconds * 1000
    duration = _wav_ms(audio) if ACCEPTED_TYPES[kind] == "wav" else None
    if ACCEPTED_TYPES[kind] == "wav" and duration is None:
        raise VoiceRefused("audio_unreadable", field="audio")
    if duration is None:
        if declared_ms is None:
            raise VoiceRefused("duration_missing", field="duration_ms")
        # The declared length cannot undercut what the file's size implies: browsers record
        # at most ~512 kbit/s (64 kB a second), so a file of N bytes lasts at least N / 64 kB
        # seconds. The size ceiling bounds the rest.
        floor_ms = len(audio) * 1000 // (64 * 1024)
        duration = max(declared_ms, floor_ms)
    if duration > limit_ms + 500:  # half a second of slack for the button's release
        raise VoiceRefused(
            "audio_too_long", field="audio", status=413, detail=str(voice.max_seconds)
        )
    return Clip(audio=audio, content_type=kind, duration_ms=duration)


def _timeouts() -> AudioTimeouts:
    return AudioTimeouts(
        connect=float(getattr(settings, "VOICE_CONNECT_TIMEOUT_S", 5.0)),
        read=float(getattr(settings, "VOICE_READ_TIMEOUT_S", 30.0)),
    )


def _client(endpoint_name: str, model: str):
    """The speech client for a model on a registered endpoint, resolved now (registration can
    change while a study runs). AudioError (not transient) when the call may not go out."""
    try:
        endpoint = endpoint_resolve(name=endpoint_name, model=model)
    except EndpointUnavailable as exc:
        raise AudioError(str(exc), transient=False) from None
    return audio_client(endpoint.kind, endpoint.provider_config(), _timeouts())


def stt_client(voice: VoiceConfig):
    """The arm's speech-to-text client, its endpoint resolved now (this may read the endpoint
    registry's table, so the async view calls it in its database round). Raises AudioError."""
    return _client(voice.stt_endpoint, voice.stt_model)


def clip_transcribe(
    *, client, voice: VoiceConfig, clip: Clip, language: str
) -> tuple[Transcript, int]:
    """(the transcript, how long it took in ms) from `client` (stt_client). Raises AudioError.
    No database access, so the async view runs it off the request's database thread."""
    started = time.monotonic()
    transcript = client.transcribe(
        model=voice.stt_model,
        audio=clip.audio,
        filename=f"clip.{ACCEPTED_TYPES[clip.content_type]}",
        content_type=clip.content_type,
        language=language,
        duration_ms=clip.duration_ms,
    )
    return transcript, int((time.monotonic() - started) * 1000)


def keep_audio_allowed(participant: Participant, voice: VoiceConfig) -> bool:
    """True when the arm may keep recordings and the participant's current consent ticked its
    checkbox (explicitly: an arm without keep_audio_checkbox never keeps audio)."""
    if not voice.keep_audio_checkbox:
        return False
    record = participant.consent_records.order_by("-signed_at", "-pk").first()
    return bool(record and record.allows(voice.keep_audio_checkbox))


def voice_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / VOICE_DIR


def clip_keep(*, message: Message, clip: Clip) -> VoiceClip:
    """Store the recording of `message` encrypted. The caller checked keep_audio_allowed."""
    name = f"{secrets.token_hex(16)}.bin"
    encrypt_to_path(clip.audio, voice_dir() / name)
    try:
        return VoiceClip.objects.create(
            message=message,
            participant_id=message.participant_id,
            file_name=name,
            content_type=clip.content_type,
            size_bytes=len(clip.audio),
            duration_ms=clip.duration_ms,
            created_at=timezone.now(),
        )
    except Exception:
        (voice_dir() / name).unlink(missing_ok=True)  # no file without its row
        raise


def clips_delete(clips) -> int:
    """Delete the files and rows of `clips` (a VoiceClip queryset); returns how many."""
    names = list(clips.values_list("file_name", flat=True))
    count = clips.delete()[0]
    for name in names:
        (voice_dir() / name).unlink(missing_ok=True)
    return count


def tts_speaker(voice: VoiceConfig):
    """``speak(text) -> Speech`` in the arm's voice, its endpoint resolved now. Raises
    AudioError (also from each call, when the speech model fails)."""
    client = _client(voice.tts_endpoint, voice.tts_model)

    def speak(text: str) -> Speech:
        return client.speak(
            model=voice.tts_model, voice=voice.tts_voice, text=text, speed=voice.tts_speed
        )

    return speak


def reply_speech(*, reply: Message, voice: VoiceConfig) -> Speech:
    """Speak a finished reply with the arm's voice; records the first synthesis's time and
    length on the reply. Raises VoiceRefused (not a speakable reply, asked too often) or
    AudioError (the speech model failed)."""
    if reply.role != Message.Role.ASSISTANT or not reply.content.strip():
        raise VoiceRefused("not_speakable", status=404)
    if reply.status not in (Message.Status.COMPLETE, Message.Status.LENGTH):
        raise VoiceRefused("not_speakable", status=409)
    from studyplatform.core.redis_client import redis_sync

    key = f"chat:speech:{reply.pk}"
    pipe = redis_sync().pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 24 * 3600)
    count, _ = pipe.execute()
    if count > MAX_SPEECH_REQUESTS_PER_REPLY:
        raise VoiceRefused("speech_limit", status=429)
    client = _client(voice.tts_endpoint, voice.tts_model)
    started = time.monotonic()
    speech = client.speak(
        model=voice.tts_model, voice=voice.tts_voice, text=reply.content, speed=voice.tts_speed
    )
    took = int((time.monotonic() - started) * 1000)
    # The first synthesis is the one the participant heard as the reply arrived; replays keep it.
    Message.objects.filter(pk=reply.pk, tts_ms__isnull=True).update(
        tts_ms=took, audio_ms=speech.duration_ms
    )
    return speech
