"""A voice reply spoken sentence by sentence while it streams (chat/speech_segments.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studyplatform.chat import services
from studyplatform.chat.models import Message
from studyplatform.chat.providers.audio import wav_duration_ms
from studyplatform.chat.speech_segments import (
    MAX_CHARS,
    MIN_CHARS,
    SentenceSplitter,
)
from tests.chat import test_voice
from tests.chat.test_chat_views import consume, login
from tests.chat.test_voice import make_wav, send_clip

# The voice arm's fixtures, shared with test_voice.py.
media = test_voice.media
voice_study = test_voice.voice_study
speaker = test_voice.speaker

REPLY = (
    "Thank you for telling me about your walk along the beach. "
    "It sounds like the sea air did you a lot of good today! "
    "Would you like to go back there at the weekend with a friend? "
    "Short one. And the last sentence ends the reply."
)


def split_all(chunks: list[str]) -> list[str]:
    splitter = SentenceSplitter()
    out = [s for chunk in chunks for s in splitter.feed(chunk)]
    rest = splitter.flush()
    return [*out, rest] if rest else out


# --- cutting sentences ---------------------------------------------------------------------


def test_sentences_are_cut_at_their_end_once_more_text_follows():
    splitter = SentenceSplitter()
    first = "Thank you for telling me about your walk along the beach."
    assert splitter.feed(first) == []  # it may be the reply's last sentence
    assert splitter.feed(" ") == []  # still nothing after it
    assert splitter.feed("It") == [first]
    assert splitter.flush() == "It"


def test_short_sentences_join_the_next_and_the_last_comes_from_flush():
    parts = split_all([REPLY[i : i + 7] for i in range(0, len(REPLY), 7)])
    assert parts == [
        "Thank you for telling me about your walk along the beach.",
        "It sounds like the sea air did you a lot of good today!",
        "Would you like to go back there at the weekend with a friend?",
        "Short one. And the last sentence ends the reply.",
    ]
    assert all(len(p) >= MIN_CHARS for p in parts[:-1])


def test_text_without_an_end_is_cut_at_a_space_before_the_maximum():
    words = ["word"] * 300
    parts = split_all([" ".join(words)])
    assert len(parts) > 1 and all(len(p) <= MAX_CHARS for p in parts)
    assert " ".join(parts).split() == words


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab .!?\n…", max_size=900), st.lists(st.integers(1, 50), max_size=40))
def test_the_sentences_are_the_whole_text_in_order_however_it_is_streamed(text, sizes):
    chunks, at = [], 0
    for size in sizes:
        chunks.append(text[at : at + size])
        at += size
    chunks.append(text[at:])
    assert "".join(split_all(chunks)).replace(" ", "").replace("\n", "") == text.replace(
        " ", ""
    ).replace("\n", "")


# --- the stream and the speech endpoint -----------------------------------------------------


def spoken_turn(client, participant, upstream, **directives):
    conversation = services.conversation_create(participant=participant)
    # the transcription, then the chat model
    upstream.script(count=2, reply=REPLY, **directives)
    events = consume(send_clip(client, conversation, make_wav(1.0)))
    return events, [data for name, data in events if name == "speak"]


def test_a_voice_reply_announces_each_sentence_and_each_is_spoken_from_the_servers_text(
    client, speaker, upstream, media
):
    # given: words 20 ms apart, so the reply streams as several frames (chat/streaming.py
    # frames what arrived within FRAME_GAP_S together)
    events, speak = spoken_turn(client, speaker, upstream, delay_ms=20)
    names = [name for name, _ in events]
    # the sentences are announced while the reply streams, the last one just before done
    assert [s["i"] for s in speak] == [0, 1, 2, 3] and speak[-1].get("last") is True
    assert names.index("speak") < max(i for i, n in enumerate(names) if n == "delta")
    assert names[-2:] == ["speak", "done"]
    assert len({s["sid"] for s in speak}) == 1 and len(speak[0]["sid"]) == 16
    # when the page asks for each sentence by its index
    upstream.reset()
    total = 0
    for s in speak:
        response = client.post(f"/p/chat/speech/{s['sid']}/{s['i']}/")
        assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
        total += wav_duration_ms(response.content)
    # then the speech model was given the reply's own sentences, in order
    spoken = [r.body["input"] for r in upstream.log if r.path == "/v1/audio/speech"]
    assert " ".join(spoken) == REPLY
    # and the log has the first sentence's synthesis time and the whole audio's length
    reply = Message.objects.get(role="assistant")
    assert reply.content == REPLY
    assert reply.tts_ms is not None and reply.audio_ms == total


def test_a_sentence_is_spoken_a_few_times_at_most_and_unknown_ones_are_refused(
    client, speaker, upstream, media
):
    _, speak = spoken_turn(client, speaker, upstream)
    url = f"/p/chat/speech/{speak[0]['sid']}/0/"
    assert [client.post(url).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert client.post(f"/p/chat/speech/{speak[0]['sid']}/9/").status_code == 404
    assert client.post("/p/chat/speech/AAAAAAAAAAAAAAAA/0/").status_code == 404
    assert client.post("/p/chat/speech/not-a-stream-id/0/").status_code == 404
    assert client.get(url).status_code == 405


def test_another_participant_cannot_hear_someone_elses_sentences(
    client, speaker, voice_study, enroll, upstream, media
):
    _, speak = spoken_turn(client, speaker, upstream)
    upstream.reset()
    login(client, enroll(voice_study))
    response = client.post(f"/p/chat/speech/{speak[0]['sid']}/0/")
    assert response.status_code == 404 and response.json()["code"] == "segment_gone"
    client.logout()
    assert client.post(f"/p/chat/speech/{speak[0]['sid']}/0/").status_code == 302
    assert not [r for r in upstream.log if r.path == "/v1/audio/speech"]


def test_a_typed_message_in_a_voice_arm_streams_no_speech(client, speaker, upstream, media):
    conversation = services.conversation_create(participant=speaker)
    upstream.script(reply=REPLY)
    events = consume(
        client.post(
            f"/p/chat/c/{conversation.pk}/reply/",
            json.dumps({"text": "hello", "client_request_id": "typed-1"}),
            content_type="application/json",
        )
    )
    assert events[-1][0] == "done"
    assert not [name for name, _ in events if name == "speak"]


@pytest.mark.parametrize("fault", ["disconnect_after: 30"])
def test_a_reply_that_breaks_announces_no_last_sentence(client, speaker, upstream, media, fault):
    conversation = services.conversation_create(participant=speaker)
    upstream.script(reply=REPLY)  # the transcription
    upstream.script(reply=REPLY, fault=fault)
    events = consume(send_clip(client, conversation, make_wav(1.0)))
    assert events[-1][0] == "error"
    assert not [d for name, d in events if name == "speak" and d.get("last")]
