"""A voice arm's reply spoken sentence by sentence, while its text streams.

The stream (chat/streaming.py) cuts the reply into sentences as the tokens arrive, keeps each
finished sentence in Redis under an unguessable stream id, and sends a ``speak`` frame with the
id and the sentence's index; the page asks ``POST /p/chat/speech/<sid>/<index>/`` for each one
and plays them in order, so the participant hears the reply while its text appears. The text
that is spoken is always the server's copy of what the model said (the page only names an
index), so the speech endpoint cannot be used to speak anything else; the stream id is tied to
the participant, and each sentence may be spoken a few times at most (each is a paid call).

What the log keeps, on the reply row as for a whole-reply synthesis: ``tts_ms``, the time the
first sentence took to synthesise (how long the participant waited for the first words), and
``audio_ms``, the length of all the sentences' audio.
"""

from __future__ import annotations

import re
import secrets
import time

from django.db.models import F, IntegerField, Q, Value
from django.db.models.functions import Coalesce

from studyplatform.core.redis_client import redis_sync

from .models import Message
from .providers.audio import Speech
from .voice import VoiceRefused

# A sentence ends at . ! ? or … (with any closing quote or bracket) followed by white space, or
# at a line break. It is cut only once non-space text follows, so the last sentence of a reply
# is always the one the end of the stream flushes, after the reply's row is known.
SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|\n+")
# Shorter sentences join the next one: a speech call per three words sounds choppy and each
# call is paid. Longer text without an end is cut at a space.
MIN_CHARS = 40
MAX_CHARS = 400
# A reply longer than this many sentences is spoken up to here; the rest stays text (the page
# offers the whole reply's speech after it ends).
MAX_SEGMENTS = 80
MAX_SPEECH_REQUESTS_PER_SEGMENT = 3
TTL_S = 3600
SID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16}$")


class SentenceSplitter:
    def __init__(self) -> None:
        self.buffer = ""

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the sentences it finished."""
        self.buffer += text
        sentences = []
        while (cut := self._cut()) is not None:
            sentence, self.buffer = self.buffer[:cut].strip(), self.buffer[cut:]
            if sentence:
                sentences.append(sentence)
        return sentences

    def flush(self) -> str:
        """The text after the last cut (the reply ended)."""
        rest, self.buffer = self.buffer.strip(), ""
        return rest

    def _cut(self) -> int | None:
        for match in SENTENCE_END.finditer(self.buffer):
            if match.end() >= len(self.buffer):
                break  # nothing follows yet: it may be the reply's last sentence
            if len(self.buffer[: match.start()].strip()) >= MIN_CHARS:
                return match.end()
        if len(self.buffer) > MAX_CHARS:
            space = self.buffer.rfind(" ", 0, MAX_CHARS)
            return space + 1 if space > 0 else MAX_CHARS
        return None


def _meta_key(sid: str) -> str:
    return f"chat:speech:seg:{sid}"


def _text_key(sid: str) -> str:
    return f"chat:speech:seg:{sid}:t"


class SpokenReply:
    """The stream's side: one per voice reply. Redis calls only when a sentence is finished."""

    def __init__(self, redis, *, participant_id: int, user_message_id: int) -> None:
        self.redis = redis
        self.sid = secrets.token_urlsafe(12)  # 16 characters
        self.participant_id = participant_id
        self.user_message_id = user_message_id
        self.splitter = SentenceSplitter()
        self.count = 0

    async def feed(self, text: str) -> list[dict]:
        """Store the sentences ``text`` finished; the ``speak`` frames' data for them."""
        return [await self._push(s) for s in self.splitter.feed(text) if self.count < MAX_SEGMENTS]

    async def finish(self, reply_id: int | None) -> list[dict]:
        """The reply ended complete: its id (for the log) and the last sentence's frame."""
        rest = self.splitter.flush()
        if reply_id is not None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(_meta_key(self.sid), "r", reply_id)
            # With the TTL again: a reply with no sentence pushed yet has no key until now.
            pipe.expire(_meta_key(self.sid), TTL_S)
            await pipe.execute()
        if rest and self.count < MAX_SEGMENTS:
            return [{**await self._push(rest), "last": True}]
        return []

    async def _push(self, sentence: str) -> dict:
        pipe = self.redis.pipeline(transaction=False)
        if self.count == 0:
            pipe.hset(
                _meta_key(self.sid),
                mapping={"p": self.participant_id, "m": self.user_message_id},
            )
            pipe.expire(_meta_key(self.sid), TTL_S)
        pipe.rpush(_text_key(self.sid), sentence)
        pipe.expire(_text_key(self.sid), TTL_S)
        await pipe.execute()
        index, self.count = self.count, self.count + 1
        return {"sid": self.sid, "i": index}


def segment_owner_message(*, sid: str, participant_id: int) -> int:
    """The participant message whose reply the stream ``sid`` speaks; VoiceRefused (404) when
    the id is unknown, expired or another participant's."""
    if not SID_PATTERN.match(sid):
        raise VoiceRefused("segment_gone", status=404)
    meta = redis_sync().hmget(_meta_key(sid), ["p", "m"])
    if meta[0] is None or int(meta[0]) != participant_id:
        raise VoiceRefused("segment_gone", status=404)
    return int(meta[1])


def segment_speak(*, sid: str, index: int, speak) -> Speech:
    """Synthesise sentence ``index`` of stream ``sid`` with ``speak(text) -> Speech`` and record
    the timings on the reply. The caller checked the owner (segment_owner_message)."""
    redis = redis_sync()
    pipe = redis.pipeline(transaction=False)
    pipe.lindex(_text_key(sid), index)
    pipe.hincrby(_meta_key(sid), f"n{index}", 1)
    text, count = pipe.execute()
    if text is None:
        raise VoiceRefused("segment_gone", status=404)
    if count > MAX_SPEECH_REQUESTS_PER_SEGMENT:
        raise VoiceRefused("speech_limit", status=429)
    started = time.monotonic()
    speech = speak(text.decode())
    took = int((time.monotonic() - started) * 1000)
    pipe = redis.pipeline(transaction=False)
    if index == 0:
        pipe.hsetnx(_meta_key(sid), "first_ms", took)
    pipe.hincrby(_meta_key(sid), "audio_ms", speech.duration_ms or 0)
    pipe.hmget(_meta_key(sid), ["r", "first_ms", "audio_ms"])
    reply_id, first_ms, audio_ms = pipe.execute()[-1]
    if reply_id is not None:
        # Sentences are fetched concurrently and may finish in any order: the audio length only
        # grows, so the last update to land holds the whole reply's.
        total = int(audio_ms or 0)
        fields = {"audio_ms": total}
        if first_ms is not None:
            first = Value(int(first_ms), output_field=IntegerField())
            fields["tts_ms"] = Coalesce(F("tts_ms"), first)
        Message.objects.filter(pk=int(reply_id)).filter(
            Q(audio_ms__isnull=True) | Q(audio_ms__lt=total)
        ).update(**fields)
    return speech
