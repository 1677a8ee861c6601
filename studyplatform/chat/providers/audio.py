"""Speech models for voice arms: speech-to-text and text-to-speech, plain Python (no Django).

Two implementations of the same two calls:

- OpenAIAudio: an OpenAI-compatible server's audio API, `POST {base}/audio/transcriptions`
  (multipart: file, model, optional language; JSON answer with `text`) and
  `POST {base}/audio/speech` (JSON: model, voice, input, response_format wav; audio answer),
  over httpx with connect/read timeouts and a ceiling on the audio it will read back.
- SimulatedAudio: the pilot pair. Transcription returns a deterministic sentence derived from
  the clip's length (no model hears anything), speech returns a real WAV of a quiet tone whose
  length follows the text's word count, so the player, timings and logs behave as in a study.

Errors are AudioError, with `transient` saying whether the same call may succeed later.
"""

from __future__ import annotations

import io
import math
import struct
import time
import wave
from dataclasses import dataclass

import httpx

from studyplatform.core.provider_config import OPENAI_BASE_URL, ProviderConfig

from .config import resolve_api_key

# OpenAI's speech endpoint accepts at most 4096 characters of input.
MAX_SPEECH_CHARS = 4096
# Ceiling on the audio read back from a speech call (a long reply as 24 kHz 16-bit WAV is
# ~3 MB a minute): a misbehaving server cannot make the platform buffer without end.
MAX_SPEECH_BYTES = 25 * 1024 * 1024
PILOT_TRANSCRIPT = "[Pilot mode: simulated transcript] I said something for {seconds} seconds."


class AudioError(Exception):
    """A speech call that failed. str() is safe to log; never shown raw to a participant."""

    def __init__(self, message: str, *, transient: bool, http_status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.http_status = http_status


@dataclass(frozen=True)
class AudioTimeouts:
    connect: float = 5.0
    read: float = 30.0


@dataclass(frozen=True)
class Transcript:
    text: str
    duration_ms: int | None  # the server's own measure of the clip, when it reports one


@dataclass(frozen=True)
class Speech:
    audio: bytes
    content_type: str
    duration_ms: int | None  # measured from the WAV header; None for other formats


def wav_duration_ms(data: bytes) -> int | None:
    """The length of a WAV file in milliseconds, or None when `data` is not a readable WAV."""
    try:
        with wave.open(io.BytesIO(data)) as reader:
            rate = reader.getframerate()
            frames = reader.getnframes()
    except (wave.Error, EOFError, struct.error):
        return None
    if rate <= 0:
        return None
    return int(frames * 1000 / rate)


def tone_wav(duration_ms: int, *, rate: int = 8000, pitch_hz: float = 220.0) -> bytes:
    """A mono 16-bit WAV of a quiet sine tone, faded in and out (no clicks)."""
    frames = max(1, rate * duration_ms // 1000)
    fade = max(1, rate // 20)
    samples = bytearray()
    for n in range(frames):
        envelope = min(1.0, n / fade, (frames - n) / fade)
        value = int(3000 * envelope * math.sin(2 * math.pi * pitch_hz * n / rate))
        samples += struct.pack("<h", value)
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(bytes(samples))
    return out.getvalue()


def _status_error(response: httpx.Response, what: str) -> AudioError:
    status = response.status_code
    transient = status in (408, 409, 429) or status >= 500
    return AudioError(f"{what} answered HTTP {status}", transient=transient, http_status=status)


def _transport_error(exc: httpx.HTTPError, what: str) -> AudioError:
    if isinstance(exc, httpx.TimeoutException):
        phase = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
        return AudioError(f"{what} timed out ({phase})", transient=True)
    return AudioError(f"{what} unreachable: {type(exc).__name__}", transient=True)


class OpenAIAudio:
    """The audio API of an OpenAI-compatible endpoint (OpenAI, vLLM, a local speech server)."""

    is_simulated = False

    def __init__(self, config: ProviderConfig, timeouts: AudioTimeouts | None = None):
        self.config = config
        self.base_url = (config.base_url or OPENAI_BASE_URL).rstrip("/")
        self.timeouts = timeouts or AudioTimeouts()

    def _client(self) -> httpx.Client:
        # A client per call: speech calls are seconds long and rare next to chat, so pooling
        # would buy little; the key is read from the environment now (rotation needs no restart).
        try:
            key = resolve_api_key(self.config, "openai")
        except Exception as exc:  # ProviderError: a missing key is never transient
            raise AudioError(str(exc), transient=False) from None
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect),
            follow_redirects=False,
        )

    def transcribe(
        self,
        *,
        model: str,
        audio: bytes,
        filename: str,
        content_type: str,
        language: str = "",
        duration_ms: int | None = None,
    ) -> Transcript:
        # duration_ms (the platform's own measure) is not sent: the server measures the file.
        data = {"model": model, "response_format": "json"}
        if language:
            data["language"] = language.split("-")[0]  # ISO 639-1: pt-br -> pt
        try:
            with self._client() as client:
                response = client.post(
                    "/audio/transcriptions",
                    data=data,
                    files={"file": (filename, audio, content_type)},
                )
        except httpx.HTTPError as exc:
            raise _transport_error(exc, "transcription") from None
        if response.status_code != 200:
            raise _status_error(response, "transcription")
        try:
            body = response.json()
            text = body["text"]
        except (ValueError, KeyError, TypeError):
            raise AudioError("transcription answer has no text", transient=False) from None
        if not isinstance(text, str):
            raise AudioError("transcription answer has no text", transient=False)
        seconds = body.get("duration") if isinstance(body, dict) else None
        duration = int(seconds * 1000) if isinstance(seconds, int | float) else None
        return Transcript(text=text.strip(), duration_ms=duration)

    def speak(self, *, model: str, voice: str, text: str, speed: float | None = None) -> Speech:
        payload: dict = {
            "model": model,
            "voice": voice,
            "input": text[:MAX_SPEECH_CHARS],
            "response_format": "wav",
        }
        if speed is not None:
            payload["speed"] = speed
        try:
            with (
                self._client() as client,
                client.stream("POST", "/audio/speech", json=payload) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    raise _status_error(response, "speech")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_SPEECH_BYTES:
                        raise AudioError("speech answer is too large", transient=False)
                    chunks.append(chunk)
                content_type = response.headers.get("content-type", "audio/wav").split(";")[0]
        except httpx.HTTPError as exc:
            raise _transport_error(exc, "speech") from None
        audio = b"".join(chunks)
        if not audio:
            raise AudioError("speech answer is empty", transient=True)
        return Speech(audio=audio, content_type=content_type, duration_ms=wav_duration_ms(audio))


class SimulatedAudio:
    """The pilot pair: calls nothing, answers deterministically."""

    is_simulated = True

    # A relaxed speaking pace (about 150 words a minute), within bounds a player handles well.
    MS_PER_WORD = 400
    MIN_SPEECH_MS = 800
    MAX_SPEECH_MS = 20_000

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s

    def transcribe(
        self,
        *,
        model: str,
        audio: bytes,
        filename: str,
        content_type: str,
        language: str = "",
        duration_ms: int | None = None,
    ) -> Transcript:
        if self.delay_s:
            time.sleep(self.delay_s)
        measured = wav_duration_ms(audio)
        length = measured if measured is not None else duration_ms
        if length is None:
            # No duration known: a stand-in from the size (16 kB a second, opus-like bitrates).
            length = len(audio) * 1000 // 16_000
        seconds = f"{length / 1000:.1f}"
        return Transcript(text=PILOT_TRANSCRIPT.format(seconds=seconds), duration_ms=length)

    def speak(self, *, model: str, voice: str, text: str, speed: float | None = None) -> Speech:
        if self.delay_s:
            time.sleep(self.delay_s)
        words = len(text[:MAX_SPEECH_CHARS].split())
        pace = self.MS_PER_WORD / (speed or 1.0)
        duration = int(min(self.MAX_SPEECH_MS, max(self.MIN_SPEECH_MS, words * pace)))
        # The voice name picks the pitch, so two simulated voices sound different.
        pitch = 180.0 + (sum(map(ord, voice)) % 8) * 20
        audio = tone_wav(duration, pitch_hz=pitch)
        return Speech(audio=audio, content_type="audio/wav", duration_ms=wav_duration_ms(audio))


def audio_client(kind: str, config: ProviderConfig, timeouts: AudioTimeouts | None = None):
    """The speech client for an endpoint of `kind` ("openai" or "simulated")."""
    if kind == "simulated":
        return SimulatedAudio()
    if kind in ("openai", "openai_compatible"):
        return OpenAIAudio(config, timeouts)
    raise AudioError(f"endpoints of kind {kind} have no speech API", transient=False)
