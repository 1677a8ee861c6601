"""Voice arms: the speech client against the loopback fake upstream, the voice send (checks,
transcription, safety screen, storage with and without consent), the spoken reply, deletion of
kept recordings, and permissions."""

from __future__ import annotations

import copy
import io
import math
import struct
import wave

import pytest

from studyplatform.chat import services
from studyplatform.chat.models import Message, VoiceClip
from studyplatform.chat.providers.audio import (
    PILOT_TRANSCRIPT,
    AudioError,
    AudioTimeouts,
    OpenAIAudio,
    SimulatedAudio,
    wav_duration_ms,
)
from studyplatform.chat.voice import voice_dir
from studyplatform.core.filecrypt import decrypt_from_path
from studyplatform.core.provider_config import ProviderConfig
from studyplatform.participants.services import participant_withdraw
from studyplatform.safety.models import SafetyAlert
from tests.chat.test_chat_views import consume, login
from tests.factories import launch_study

pytestmark = pytest.mark.django_db

MODELS = ["gpt-test-legacy", "gpt-test-current", "whisper-test", "tts-test"]
KEEP_AUDIO = {
    "en": "You may keep recordings of my voice messages (encrypted) for this study.",
    "pt-br": "Vocês podem guardar as gravações das minhas mensagens de voz (criptografadas).",
}


def make_wav(seconds: float, rate: int = 8000) -> bytes:
    """A mono 16-bit WAV of a 300 Hz tone (what a fake microphone would send)."""
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(2000 * math.sin(2 * math.pi * 300 * n / rate))) for n in range(frames)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples)
    return out.getvalue()


def voice_doc(rct_doc, *, endpoint="loopback", keep_checkbox=True) -> dict:
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "voice-study"
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": endpoint, "name": f"gpt-test-{arm['key']}"}
        arm["modality"] = "voice"
        arm["voice"] = {
            "stt": {"endpoint": endpoint, "name": "whisper-test"},
            "tts": {"endpoint": endpoint, "name": "tts-test", "voice": "alloy"},
            "max_seconds": 10,
        }
        if keep_checkbox:
            arm["voice"]["keep_audio_checkbox"] = "keep_audio"
    for document in doc["consent"]["documents"]:
        document["checkboxes"].append(
            {"key": "keep_audio", "label": KEEP_AUDIO[document["language"]], "required": False}
        )
    return doc


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def voice_study(upstream, register_endpoint, owner, rct_doc, media):
    from studyplatform.studies.services import study_create_from_protocol

    register_endpoint("loopback", base_url=upstream.base_url, models=MODELS)
    study = study_create_from_protocol(doc=voice_doc(rct_doc), author=owner)
    return launch_study(study, owner)


@pytest.fixture
def speaker(voice_study, enroll, client):
    """A participant in a voice arm who did not tick keep_audio."""
    participant = enroll(voice_study)
    login(client, participant)
    return participant


def voice_url(conversation) -> str:
    return f"/p/chat/c/{conversation.pk}/voice/"


def send_clip(client, conversation, audio: bytes, *, content_type="audio/wav", **fields):
    upload = io.BytesIO(audio)
    upload.name = "clip.wav" if "wav" in content_type else "clip.webm"
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {
        "audio": SimpleUploadedFile(upload.name, audio, content_type=content_type),
        "client_request_id": fields.pop("client_request_id", "clip-1"),
        **{k: str(v) for k, v in fields.items()},
    }
    return client.post(voice_url(conversation), data)


def stt_requests(upstream):
    return [r for r in upstream.log if r.path == "/v1/audio/transcriptions"]


# --- the speech client against the loopback server ------------------------------------------


def test_transcription_posts_multipart_and_returns_the_text(upstream):
    client = OpenAIAudio(ProviderConfig(base_url=upstream.base_url, requires_api_key=False))
    audio = make_wav(1.5)
    upstream.script(reply="hello there")
    transcript = client.transcribe(
        model="whisper-test",
        audio=audio,
        filename="clip.wav",
        content_type="audio/wav",
        language="pt-br",
    )
    assert transcript.text == "hello there" and transcript.duration_ms == 1500
    (request,) = stt_requests(upstream)
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert request.body["model"] == "whisper-test" and request.body["language"] == "pt"
    assert request.body["file"]["bytes"] == audio
    assert request.body["file"]["content_type"] == "audio/wav"


def test_speech_returns_a_wav_and_asks_for_the_arms_voice(upstream):
    client = OpenAIAudio(ProviderConfig(base_url=upstream.base_url, requires_api_key=False))
    speech = client.speak(model="tts-test", voice="alloy", text="one two three four five")
    assert speech.content_type == "audio/wav" and speech.duration_ms == 1000
    request = next(r for r in upstream.log if r.path == "/v1/audio/speech")
    assert request.body == {
        "model": "tts-test",
        "voice": "alloy",
        "input": "one two three four five",
        "response_format": "wav",
    }


@pytest.mark.parametrize(("status", "transient"), [(500, True), (429, True), (400, False)])
def test_speech_errors_say_whether_a_retry_can_help(upstream, status, transient):
    client = OpenAIAudio(ProviderConfig(base_url=upstream.base_url, requires_api_key=False))
    upstream.script(fault=str(status))
    with pytest.raises(AudioError) as caught:
        client.transcribe(
            model="whisper-test", audio=make_wav(1), filename="a.wav", content_type="audio/wav"
        )
    assert caught.value.http_status == status and caught.value.transient is transient


def test_a_stalled_speech_server_times_out(upstream):
    client = OpenAIAudio(
        ProviderConfig(base_url=upstream.base_url, requires_api_key=False),
        AudioTimeouts(connect=1, read=0.3),
    )
    upstream.script(fault="stall")
    with pytest.raises(AudioError, match="timed out") as caught:
        client.speak(model="tts-test", voice="alloy", text="hi")
    assert caught.value.transient


def test_the_key_is_read_from_the_endpoints_variable(upstream, monkeypatch):
    monkeypatch.setenv("SPEECH_TEST_KEY", "sk-speech")
    client = OpenAIAudio(ProviderConfig(base_url=upstream.base_url, api_key_env="SPEECH_TEST_KEY"))
    client.speak(model="tts-test", voice="alloy", text="hi")
    assert upstream.log[-1].headers["authorization"] == "Bearer sk-speech"
    monkeypatch.delenv("SPEECH_TEST_KEY")
    with pytest.raises(AudioError, match="SPEECH_TEST_KEY") as caught:
        client.speak(model="tts-test", voice="alloy", text="hi")
    assert not caught.value.transient


def test_the_simulated_pair_is_deterministic_and_speaks_a_real_wav():
    sim = SimulatedAudio()
    first = sim.transcribe(model="m", audio=make_wav(2.5), filename="a", content_type="audio/wav")
    again = sim.transcribe(model="m", audio=make_wav(2.5), filename="a", content_type="audio/wav")
    assert first == again and first.text == PILOT_TRANSCRIPT.format(seconds="2.5")
    webm = sim.transcribe(
        model="m", audio=b"x" * 100, filename="a", content_type="audio/webm", duration_ms=3200
    )
    assert "3.2 seconds" in webm.text
    speech = sim.speak(model="m", voice="alloy", text="word " * 10)
    assert speech.content_type == "audio/wav"
    assert wav_duration_ms(speech.audio) == speech.duration_ms == 4000
    assert sim.speak(model="m", voice="shimmer", text="word " * 10).audio != speech.audio


# --- sending a recording -------------------------------------------------------------------


def test_a_recording_is_transcribed_stored_as_a_voice_message_and_answered(
    client, speaker, upstream, media
):
    conversation = services.conversation_create(participant=speaker)
    upstream.script(reply="I walked to the beach today")
    response = send_clip(client, conversation, make_wav(2.0), tz_offset=-180)
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    stored = Message.objects.get(role="user")
    assert stored.content == "I walked to the beach today"
    assert stored.modality == "voice" and stored.audio_ms == 2000
    assert stored.stt_ms is not None and stored.tz_offset_minutes == -180
    events = consume(response)
    assert events[0] == ("message", {"message": {"id": stored.pk, "text": stored.content}})
    assert events[-1][0] == "done"
    chat_call = next(r for r in upstream.log if r.path == "/v1/chat/completions")
    assert chat_call.body["messages"][-1]["content"] == "I walked to the beach today"
    # and: without the keep-audio checkbox nothing was written to disk
    assert not VoiceClip.objects.exists()
    assert not voice_dir().exists() or list(voice_dir().iterdir()) == []


def test_a_recording_is_kept_encrypted_when_the_consent_allows_it(
    client, voice_study, enroll, upstream, media
):
    from tests.conftest import ALL_CONSENT

    participant = enroll(voice_study, choices={**ALL_CONSENT, "keep_audio": True})
    login(client, participant)
    conversation = services.conversation_create(participant=participant)
    audio = make_wav(1.0)
    consume(send_clip(client, conversation, audio))
    clip = VoiceClip.objects.get()
    assert clip.message.modality == "voice" and clip.duration_ms == 1000
    path = voice_dir() / clip.file_name
    assert audio not in path.read_bytes()  # encrypted at rest
    assert b"".join(decrypt_from_path(path)) == audio
    # withdrawal with deletion removes the recording and its file
    participant_withdraw(participant=participant, mode="delete", by="participant")
    assert not VoiceClip.objects.exists() and not path.exists()


def test_download_my_data_carries_the_participants_kept_recordings_and_only_theirs(
    client, voice_study, enroll, upstream, media, django_capture_on_commit_callbacks
):
    import json
    import zipfile

    from studyplatform.participants.models import DataDownload
    from tests.conftest import ALL_CONSENT

    # given: two participants who let the platform keep their audio, each with one recording
    me = enroll(voice_study, choices={**ALL_CONSENT, "keep_audio": True})
    other = enroll(voice_study, choices={**ALL_CONSENT, "keep_audio": True})
    mine, theirs = make_wav(1.0), make_wav(2.0)
    for person, audio in ((other, theirs), (me, mine)):
        login(client, person)
        consume(send_clip(client, services.conversation_create(participant=person), audio))
    clip = VoiceClip.objects.get(participant=me)
    # when: I ask for my data
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/p/data/")
    download = DataDownload.objects.get(participant=me)
    assert download.status == "ready"
    response = client.get(f"/p/data/{download.pk}/file/")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    # then: my recording is in it, decrypted, named after its message, and listed in a table
    name = f"voice/message-{clip.message_id}.wav"
    assert [n for n in archive.namelist() if n.startswith("voice/")] == [name]
    assert archive.read(name) == mine
    rows = json.loads(archive.read("voice_recordings.json"))
    assert [(r["message_id"], r["file"], r["duration_ms"]) for r in rows] == [
        (clip.message_id, name, 1000)
    ]
    assert "voice/" in archive.read("README.txt").decode()
    # and the other participant's recording is not
    assert theirs not in b"".join(archive.read(n) for n in archive.namelist())


def test_a_participant_without_kept_recordings_gets_no_voice_table(
    client, voice_study, enroll, upstream, media, django_capture_on_commit_callbacks
):
    import zipfile

    from studyplatform.participants.models import DataDownload

    participant = enroll(voice_study)  # the consent's keep_audio box left unticked
    login(client, participant)
    consume(send_clip(client, services.conversation_create(participant=participant), make_wav(1.0)))
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/p/data/")
    download = DataDownload.objects.get(participant=participant)
    response = client.get(f"/p/data/{download.pk}/file/")
    names = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    assert "messages.csv" in names
    assert not [n for n in names if n.startswith("voice") or n.startswith("voice_recordings")]


def test_retention_after_close_deletes_kept_recordings(
    client, voice_study, enroll, upstream, media, owner
):
    import datetime as dt

    from django.utils import timezone

    from studyplatform.chat.retention import chat_text_delete
    from tests.conftest import ALL_CONSENT

    participant = enroll(voice_study, choices={**ALL_CONSENT, "keep_audio": True})
    login(client, participant)
    conversation = services.conversation_create(participant=participant)
    consume(send_clip(client, conversation, make_wav(1.0)))
    path = voice_dir() / VoiceClip.objects.get().file_name
    protocol = copy.deepcopy(voice_study.protocol)
    protocol["retention"] = {"chat_text_after_close": "delete", "after_days": 0}
    version = voice_study.current_version
    type(version).objects.filter(pk=version.pk).update(content=protocol)
    type(voice_study).objects.filter(pk=voice_study.pk).update(
        status="closed", closed_at=timezone.now() - dt.timedelta(days=1)
    )
    voice_study.refresh_from_db()
    counts = chat_text_delete(study=voice_study)
    assert counts["voice_clips"] == 1 and not path.exists()
    assert Message.objects.get(role="user").modality == "voice"  # the row stays


def test_the_transcript_is_safety_screened_like_typed_text(client, speaker, upstream):
    conversation = services.conversation_create(participant=speaker)
    upstream.script(reply="I want to end my life")
    events = consume(send_clip(client, conversation, make_wav(1.0)))
    name, data = events[0]
    assert name == "message" and data["crisis"]["severity"] == "high"
    assert "findahelpline.com" in data["crisis"]["html"]
    alert = SafetyAlert.objects.get(participant=speaker)
    assert alert.severity == "high"


def test_a_failed_transcription_stores_nothing_and_the_same_clip_can_be_sent_again(
    client, speaker, upstream
):
    conversation = services.conversation_create(participant=speaker)
    upstream.script(fault="503")
    failed = send_clip(client, conversation, make_wav(1.0), client_request_id="again")
    assert failed.status_code == 502 and failed.json()["code"] == "stt_failed"
    assert "try again" in failed.json()["error"]
    assert not Message.objects.exists()
    # the page keeps the clip and sends it again with the same request id
    upstream.script(reply="second try")
    retried = send_clip(client, conversation, make_wav(1.0), client_request_id="again")
    consume(retried)
    assert Message.objects.get(role="user").content == "second try"
    # and a repeat of a stored clip is answered from the log: no second transcription
    repeat = send_clip(client, conversation, make_wav(1.0), client_request_id="again")
    assert repeat.status_code == 200 and repeat.json()["message"]["text"] == "second try"
    assert len(stt_requests(upstream)) == 2


def test_a_transcription_timeout_tells_the_participant(client, speaker, upstream, settings):
    settings.VOICE_READ_TIMEOUT_S = 0.3
    conversation = services.conversation_create(participant=speaker)
    upstream.script(fault="stall")
    response = send_clip(client, conversation, make_wav(1.0))
    assert response.status_code == 502 and response.json()["code"] == "stt_failed"
    assert not Message.objects.exists()


def test_a_speech_model_withdrawn_from_the_registry_is_not_called(
    client, speaker, upstream, register_endpoint
):
    # the operator removed the speech model from the endpoint after the study launched
    register_endpoint(
        "loopback", base_url=upstream.base_url, models=["gpt-test-legacy", "gpt-test-current"]
    )
    conversation = services.conversation_create(participant=speaker)
    response = send_clip(client, conversation, make_wav(1.0))
    assert response.status_code == 502 and response.json()["code"] == "stt_failed"
    assert not Message.objects.exists() and stt_requests(upstream) == []


def test_a_refused_send_hands_the_transcript_back(client, speaker, upstream, monkeypatch):
    monkeypatch.setattr(
        services,
        "limits_for",
        lambda participant: {**services.DEFAULT_LIMITS, "messages_per_minute": 0},
    )
    conversation = services.conversation_create(participant=speaker)
    upstream.script(reply="words I do not want to lose")
    response = send_clip(client, conversation, make_wav(1.0))
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert response.json()["transcript"] == "words I do not want to lose"
    assert not Message.objects.exists()


def test_silence_is_refused_without_storing_a_message(client, speaker, upstream):
    conversation = services.conversation_create(participant=speaker)
    upstream.script(reply="  ")
    response = send_clip(client, conversation, make_wav(1.0))
    assert response.status_code == 422 and response.json()["code"] == "no_speech"
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("audio", "content_type", "fields", "status", "code", "field"),
    [
        (make_wav(11.0), "audio/wav", {}, 413, "audio_too_long", "audio"),
        (b"RIFF....not a wav", "audio/wav", {}, 400, "audio_unreadable", "audio"),
        (b"\x1aE\xdf\xa3" + b"\0" * 500, "audio/webm", {}, 400, "duration_missing", "duration_ms"),
        (
            b"\x1aE\xdf\xa3" + b"\0" * 500,
            "audio/webm",
            {"duration_ms": "x"},
            400,
            "bad_field",
            "duration_ms",
        ),
        (
            b"\x1aE\xdf\xa3" + b"\0" * 500,
            "audio/webm",
            {"duration_ms": 10_600},
            413,
            "audio_too_long",
            "audio",
        ),
        (b"GIF89a", "image/gif", {}, 415, "audio_type", "audio"),
        (make_wav(1.0), "audio/wav", {"tz_offset": 99999}, 400, "bad_field", "tz_offset"),
    ],
)
def test_bad_recordings_get_a_clear_error_naming_the_field_and_nothing_is_stored(
    client, speaker, upstream, audio, content_type, fields, status, code, field
):
    conversation = services.conversation_create(participant=speaker)
    response = send_clip(client, conversation, audio, content_type=content_type, **fields)
    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["field"] == field
    assert response.json()["error"]
    assert not Message.objects.exists() and stt_requests(upstream) == []


def test_an_upload_over_the_size_ceiling_is_refused_before_transcription(
    client, speaker, upstream, settings
):
    settings.VOICE_MAX_UPLOAD_BYTES = 10_000
    conversation = services.conversation_create(participant=speaker)
    response = send_clip(client, conversation, make_wav(1.0))  # 16 kB
    assert response.status_code == 413 and response.json()["code"] == "audio_too_large"
    assert not Message.objects.exists() and stt_requests(upstream) == []


def test_a_missing_recording_names_the_audio_field(client, speaker):
    conversation = services.conversation_create(participant=speaker)
    response = client.post(voice_url(conversation), {"duration_ms": "1000"})
    assert response.status_code == 400 and response.json()["field"] == "audio"


def test_the_error_is_translated(client, speaker, upstream):
    from django.core.files.uploadedfile import SimpleUploadedFile

    conversation = services.conversation_create(participant=speaker)
    upstream.script(fault="500")
    response = client.post(
        voice_url(conversation),
        {"audio": SimpleUploadedFile("a.wav", make_wav(1.0), content_type="audio/wav")},
        HTTP_ACCEPT_LANGUAGE="pt-BR",
    )
    assert response.status_code == 502
    assert "não pôde ser transcrita" in response.json()["error"]


# --- the spoken reply ----------------------------------------------------------------------


def test_the_reply_is_spoken_and_its_timing_logged(client, speaker, upstream):
    conversation = services.conversation_create(participant=speaker)
    upstream.script(reply="hello")
    events = consume(send_clip(client, conversation, make_wav(1.0)))
    reply_id = events[-1][1]["reply"]
    response = client.post(f"/p/chat/m/{reply_id}/speech/")
    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    assert wav_duration_ms(response.content) > 0
    reply = Message.objects.get(pk=reply_id)
    assert reply.tts_ms is not None and reply.audio_ms == wav_duration_ms(response.content)
    speech_call = next(r for r in upstream.log if r.path == "/v1/audio/speech")
    assert speech_call.body["input"] == reply.content and speech_call.body["voice"] == "alloy"


def test_a_reply_can_be_spoken_a_few_times_not_without_end(client, speaker, upstream):
    conversation = services.conversation_create(participant=speaker)
    events = consume(send_clip(client, conversation, make_wav(1.0)))
    url = f"/p/chat/m/{events[-1][1]['reply']}/speech/"
    codes = [client.post(url).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]


def test_a_failed_speech_leaves_the_reply_text_and_says_so(client, speaker, upstream):
    conversation = services.conversation_create(participant=speaker)
    events = consume(send_clip(client, conversation, make_wav(1.0)))
    upstream.script(fault="500")
    response = client.post(f"/p/chat/m/{events[-1][1]['reply']}/speech/")
    assert response.status_code == 502 and response.json()["code"] == "tts_failed"
    assert Message.objects.get(role="assistant").status == "complete"


# --- permissions -----------------------------------------------------------------------------


def test_voice_endpoints_refuse_other_participants_and_people_without_a_session(
    client, speaker, voice_study, enroll, upstream
):
    conversation = services.conversation_create(participant=speaker)
    events = consume(send_clip(client, conversation, make_wav(1.0)))
    reply_id = events[-1][1]["reply"]
    other = enroll(voice_study)
    login(client, other)
    assert send_clip(client, conversation, make_wav(1.0), client_request_id="x").status_code == 404
    assert client.post(f"/p/chat/m/{reply_id}/speech/").status_code == 404
    client.logout()
    assert send_clip(client, conversation, make_wav(1.0), client_request_id="y").status_code == 403
    assert client.post(f"/p/chat/m/{reply_id}/speech/").status_code == 302
    assert Message.objects.filter(role="user").count() == 1
    assert len(stt_requests(upstream)) == 1


def test_the_voice_send_needs_the_csrf_token(speaker, upstream):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    login(strict, speaker)
    conversation = services.conversation_create(participant=speaker)
    audio = SimpleUploadedFile("a.wav", make_wav(1.0), content_type="audio/wav")
    response = strict.post(voice_url(conversation), {"audio": audio})
    assert response.status_code == 403
    assert not Message.objects.exists() and stt_requests(upstream) == []


def test_a_large_recording_is_never_spooled_to_a_temporary_file(
    client, speaker, upstream, settings, monkeypatch
):
    from django.core.files import uploadhandler

    # given: uploads above 1 kB would normally be written to a temporary file on disk
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    spooled = []
    original = uploadhandler.TemporaryFileUploadHandler.new_file
    monkeypatch.setattr(
        uploadhandler.TemporaryFileUploadHandler,
        "new_file",
        lambda self, *a, **k: spooled.append(a) or original(self, *a, **k),
    )
    conversation = services.conversation_create(participant=speaker)
    # when: a 48 kB recording is sent by a participant who did not agree to keep recordings
    consume(send_clip(client, conversation, make_wav(3.0)))
    # then: it was transcribed from memory; nothing was written anywhere
    assert Message.objects.get(role="user").audio_ms == 3000
    assert spooled == [] and not VoiceClip.objects.exists()


def test_a_recording_of_the_largest_allowed_size_is_not_spooled_by_the_asgi_handler():
    # Django's ASGI handler writes request bodies above FILE_UPLOAD_MAX_MEMORY_SIZE to a
    # temporary file before any view runs; the settings keep a full-size voice body in memory.
    from django.conf import settings

    from studyplatform.chat.voice_views import MULTIPART_OVERHEAD

    largest_body = settings.VOICE_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD
    assert largest_body <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE


def test_a_text_arm_refuses_recordings(client, chat_study, enroll, upstream):
    participant = enroll(chat_study)
    login(client, participant)
    conversation = services.conversation_create(participant=participant)
    response = send_clip(client, conversation, make_wav(1.0))
    assert response.status_code == 400 and response.json()["code"] == "not_voice"
    page = client.get(f"/p/chat/c/{conversation.pk}/").content.decode()
    assert 'id="talk-button"' not in page
    assert stt_requests(upstream) == []


def test_the_voice_page_has_push_to_talk_and_a_type_instead_switch(client, speaker):
    conversation = services.conversation_create(participant=speaker)
    page = client.get(f"/p/chat/c/{conversation.pk}/", HTTP_ACCEPT_LANGUAGE="pt-BR")
    html = page.content.decode()
    assert 'id="talk-button"' in html and "chat/voice.js" in html
    assert "Segure para falar" in html and "Digitar em vez disso" in html


# --- exports ---------------------------------------------------------------------------------


def test_exports_carry_modality_and_speech_timings_with_codebook_entries(
    client, speaker, voice_study, owner, upstream
):
    from tests.exports.test_export_dataset import build, rows_of, unzip

    conversation = services.conversation_create(participant=speaker)
    events = consume(send_clip(client, conversation, make_wav(1.5)))
    client.post(f"/p/chat/m/{events[-1][1]['reply']}/speech/")
    consume(
        client.post(
            f"/p/chat/c/{conversation.pk}/reply/",
            '{"text": "typed this time"}',
            content_type="application/json",
        )
    )
    # the modality and speech timings name the arm: suppressed with it for k-anonymity
    blinded = unzip(build(voice_study, owner, format="jsonl", tables=["messages"]))
    rows = rows_of("messages.jsonl", blinded["messages.jsonl"])
    assert {(r["arm"], r["modality"], r["stt_ms"]) for r in rows} == {("*", "*", None)}
    # with the arm not treated as a quasi-identifier, the values are there
    export = build(voice_study, owner, format="jsonl", tables=["messages"], quasi_identifiers=[])
    files = unzip(export)
    rows = rows_of("messages.jsonl", files["messages.jsonl"])
    users = [r for r in rows if r["role"] == "user"]
    assert [(r["modality"], r["audio_ms"]) for r in users] == [("voice", 1500), ("text", None)]
    assert users[0]["stt_ms"] is not None and users[1]["stt_ms"] is None
    replies = [r for r in rows if r["role"] == "assistant"]
    assert replies[0]["tts_ms"] is not None and replies[0]["audio_ms"] > 0
    assert replies[1]["tts_ms"] is None  # never spoken
    codebook = files["codebook.json"].decode()
    for column in ("modality", "audio_ms", "stt_ms", "tts_ms"):
        assert f'"{column}"' in codebook
