"""The decrypted texts a web process keeps for model requests (core.fields.DecryptedTexts, used
by chat.services.build_request, issue 19): a conversation's history is decrypted once per
process instead of on every send, within a size bound and an idle time."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from studyplatform.chat import services
from studyplatform.chat.models import Message
from studyplatform.core import fields as core_fields
from studyplatform.core.fields import DecryptedTexts, encrypt_str
from studyplatform.core.fields import decrypt_str as real_decrypt
from tests.chat import test_chat_stream
from tests.core.test_settings import start_django

participant = test_chat_stream.participant  # an enrolled participant of the chat study
conversation = test_chat_stream.conversation


@pytest.fixture
def decryptions(monkeypatch) -> list[str]:
    """The tokens core.fields.decrypt_str is asked to decrypt from now on."""
    seen: list[str] = []
    real = core_fields.decrypt_str
    monkeypatch.setattr(core_fields, "decrypt_str", lambda token: seen.append(token) or real(token))
    return seen


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """core.fields' monotonic clock, set by the test (now[0])."""
    now = [1000.0]
    monkeypatch.setattr(core_fields.time, "monotonic", lambda: now[0])
    return now


def test_a_token_is_decrypted_once_and_gives_its_text(decryptions):
    texts = DecryptedTexts(max_chars=10_000, max_age_s=60)
    token = encrypt_str("I keep bees.")
    assert texts.decrypt(token) == texts.decrypt(token) == "I keep bees."
    assert decryptions == [token]
    # another encryption of the same text is another token, decrypted on its own
    again = encrypt_str("I keep bees.")
    assert texts.decrypt(again) == "I keep bees."
    assert decryptions == [token, again]


def test_the_least_recently_used_go_first_within_the_size_bound(decryptions):
    a, b, c = (encrypt_str(t * 10) for t in "abc")
    size = len(a) + 10  # every token here is as long as the others
    texts = DecryptedTexts(max_chars=2 * size, max_age_s=60)
    texts.decrypt(a)
    texts.decrypt(b)
    texts.decrypt(a)  # a is now the most recently used
    texts.decrypt(c)  # over the bound: b goes
    assert len(texts) == 2 and texts.chars == 2 * size
    decryptions.clear()
    texts.decrypt(a)
    texts.decrypt(c)
    assert decryptions == []
    texts.decrypt(b)
    assert decryptions == [b]


def test_a_text_larger_than_the_bound_is_not_kept_and_zero_keeps_nothing(decryptions):
    token = encrypt_str("x" * 500)
    small = DecryptedTexts(max_chars=100, max_age_s=60)
    off = DecryptedTexts(max_chars=0, max_age_s=60)
    for texts in (small, off):
        assert texts.decrypt(token) == texts.decrypt(token) == "x" * 500
        assert len(texts) == 0 and texts.chars == 0
    assert decryptions == [token] * 4


def test_an_entry_unused_for_the_idle_time_is_dropped(decryptions, clock):
    texts = DecryptedTexts(max_chars=10_000, max_age_s=60)
    used, idle = encrypt_str("used"), encrypt_str("idle")
    texts.decrypt(idle)
    texts.decrypt(used)
    clock[0] += 45
    texts.decrypt(used)  # used again: its idle time starts over
    clock[0] += 45  # idle: unused for 90 s, used: for 45 s
    texts.decrypt(used)
    assert len(texts) == 1  # dropped at this lookup, without being asked for
    assert texts.chars == len(used) + len("used")
    decryptions.clear()
    assert texts.decrypt(idle) == "idle"
    assert decryptions == [idle]


def test_a_key_that_cannot_decrypt_a_token_is_still_an_error(settings):
    texts = DecryptedTexts(max_chars=10_000, max_age_s=60)
    token = encrypt_str("secret")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(core_fields.ImproperlyConfigured):
        texts.decrypt(token)
    assert len(texts) == 0


def send(participant, conversation, text):
    return services.message_send(participant=participant, conversation=conversation, text=text)


def build(participant, conversation, message):
    return services.build_request(
        user_message=message, arm=conversation.arm, participant=participant
    )


@pytest.mark.django_db
def test_the_next_send_decrypts_only_its_own_message(participant, conversation, decryptions):
    # given: a conversation of five messages whose request was built once
    for text in ("one", "two", "three", "four"):
        send(participant, conversation, text)
    fifth = send(participant, conversation, "five").message
    decryptions.clear()
    first = build(participant, conversation, fifth)
    assert len(decryptions) == 5
    # when: the next message's request
    sixth = send(participant, conversation, "six").message
    decryptions.clear()
    second = build(participant, conversation, sixth)
    # then: one decryption, the new message's, and the same history as before
    assert [real_decrypt(token) for token in decryptions] == ["six"]
    assert [m["content"] for m in second.messages] == [
        *(m["content"] for m in first.messages),
        "six",
    ]


@pytest.mark.django_db
def test_a_changed_text_reaches_the_model_as_changed(participant, conversation):
    first = send(participant, conversation, "my name is Ana").message
    second = send(participant, conversation, "hello").message
    build(participant, conversation, second)
    # when: the first message's text is replaced (as a participant's deletion request does)
    Message.objects.filter(pk=first.pk).update(content="[removed]")
    # then: the next request has the new text, not the one this process decrypted before
    request = build(participant, conversation, second)
    assert [m["content"] for m in request.messages] == ["[removed]", "hello"]


@pytest.mark.django_db
def test_switched_off_every_send_decrypts_the_whole_history(
    participant, conversation, decryptions, settings
):
    settings.CHAT_HISTORY_CACHE_MCHARS = 0
    send(participant, conversation, "one")
    second = send(participant, conversation, "two").message
    decryptions.clear()
    build(participant, conversation, second)
    build(participant, conversation, second)
    assert len(decryptions) == 4


def test_negative_sizes_refuse_to_start():
    for name in ("CHAT_HISTORY_CACHE_MCHARS", "CHAT_HISTORY_CACHE_IDLE_S"):
        result = start_django(DEBUG="true", **{name: "-1"})
        assert result.returncode != 0
        assert "CHAT_HISTORY_CACHE_MCHARS and CHAT_HISTORY_CACHE_IDLE_S must be 0 or more" in (
            result.stderr
        )
