"""Issue 12, "every input has a ceiling": YAML expansion and nesting, protocol numbers without
maxima, invalid Unicode and out-of-range numbers in JSON bodies, and stored protocols whose
numbers overflow the code that computes with them. Each case was a 500 or a resource sink."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest
from django.urls import reverse

from studyplatform.chat.models import Message
from studyplatform.participants import allocation
from studyplatform.participants.session import SESSION_KEY
from studyplatform.safety.models import SafetyAlert
from studyplatform.studies.models import ProtocolVersion, Study
from studyplatform.studies.protocol import to_yaml

pytestmark = pytest.mark.django_db

# Six levels of nine: 9**6 = 531,441 strings once the aliases are expanded. The main branch
# spent seconds and tens of MB expanding it (the 360-byte, one-level-deeper version
# cost 12 s and 900 MB); the next level exhausts memory.
BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
)


def measured(call):
    """(result, seconds, peak traced bytes) of one call."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = call()
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, elapsed, peak


def test_billion_laughs_to_the_validate_api_is_refused_before_any_expansion(make_user, api_as):
    # given: a researcher and a 300-byte document whose aliases expand to half a million nodes
    client = api_as(make_user("mallory"))
    client.post("/api/protocol/validate/", {"yaml": "a: 1"}, format="json")  # warm: imports
    # when: it is sent to the validate endpoint
    response, elapsed, peak = measured(
        lambda: client.post("/api/protocol/validate/", {"yaml": BILLION_LAUGHS}, format="json")
    )
    # then: a 400 naming the first anchor's line, decided without building the expansion
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"path": "", "message": "YAML anchors and aliases are not allowed", "line": 1}
    ]
    assert peak < 5_000_000  # the expansion alone takes tens of MB
    assert elapsed < 2  # loose: a ceiling, not a benchmark


def test_billion_laughs_is_refused_by_the_console_validate_and_new_study(client, owner, study):
    # given: the study's owner signed in to the console
    client.force_login(owner)
    # when: the designer's live validation receives the document
    response = client.post(
        reverse("console:design_validate", args=[study.slug]),
        json.dumps({"yaml": BILLION_LAUGHS}),
        content_type="application/json",
    )
    # then: a 400 with the located error
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["message"] == "YAML anchors and aliases are not allowed" and error["line"] == 1
    # when: the same document is uploaded as a new study
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("laughs.yaml", BILLION_LAUGHS.encode(), "application/x-yaml")
    page = client.post(reverse("console:study_new"), {"source": "upload", "file": upload})
    # then: the form comes back with the error and no study was created
    assert page.status_code == 400
    assert "YAML anchors and aliases are not allowed" in page.content.decode()
    assert Study.objects.count() == 1


def test_anchors_are_refused_even_when_never_used(make_user, api_as, rct_doc):
    text = to_yaml(rct_doc).replace("study:\n", "study: &meta\n", 1)
    response = api_as(make_user("alice")).post(
        "/api/protocol/validate/", {"yaml": text}, format="json"
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["message"] == "YAML anchors and aliases are not allowed"
    assert error["line"] == text.splitlines().index("study: &meta") + 1


def test_three_thousand_nested_brackets_are_a_400_not_a_500(make_user, api_as, client, owner):
    # given: YAML text that is 3,000 nested flow sequences
    text = "[" * 3000
    api = api_as(make_user("mallory"))
    # when: it is validated through the API and the console
    response = api.post("/api/protocol/validate/", {"yaml": text}, format="json")
    # then: a 400 saying how deep a protocol may be, with the line
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["message"] == "the document is nested too deeply (at most 20 levels)"
    assert error["line"] == 1


def test_a_deeply_nested_json_body_is_a_400_not_a_500(make_user, api_as):
    # given: a protocol sent as JSON, nested 3,000 levels deep
    body = '{"protocol": ' + "[" * 3000 + "]" * 3000 + "}"
    # when: it is posted to the validate endpoint
    response = api_as(make_user("mallory")).post(
        "/api/protocol/validate/", body, content_type="application/json"
    )
    # then: the parser refuses it with a 400
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


def test_an_oversized_protocol_is_refused_with_the_limit_named(make_user, api_as, rct_doc):
    rct_doc["study"]["description"] = "x" * (300 * 1024)
    response = api_as(make_user("alice")).post(
        "/api/protocol/validate/", {"yaml": to_yaml(rct_doc)}, format="json"
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["message"].startswith("the document is too large (")
    assert error["message"].endswith("at most 256 KB)")


@pytest.mark.parametrize(
    ("section", "field", "value", "path", "message"),
    [
        (
            "safety",
            "response_time_hours",
            1e308,
            "safety.response_time_hours",
            "must be at most 720",
        ),
        (
            "allocation",
            "block_sizes",
            [10_000_000],
            "allocation.block_sizes[0]",
            "must be at most 1000",
        ),
        (
            "study",
            "target_enrollment",
            10**30,
            "study.target_enrollment",
            "must be at most 1000000",
        ),
    ],
)
def test_protocol_numbers_beyond_their_ceiling_are_refused_naming_the_field(
    make_user, api_as, rct_doc, section, field, value, path, message
):
    # given: the example protocol with one number far beyond any sensible value
    rct_doc[section][field] = value
    client = api_as(make_user("alice"))
    # when: a study is created from it as YAML
    response = client.post("/api/studies/", {"yaml": to_yaml(rct_doc)}, format="json")
    # then: 400 with the field's path and maximum, nothing saved
    assert response.status_code == 400
    assert {"path": path, "message": message} in [
        {"path": e["path"], "message": e["message"]} for e in response.json()["errors"]
    ]
    assert Study.objects.count() == 0


def test_a_json_protocol_with_an_unstorable_string_is_a_400_naming_the_field(
    make_user, api_as, rct_doc
):
    # given: a protocol sent as JSON whose title is a lone surrogate
    body = json.dumps({"protocol": rct_doc}).replace(
        json.dumps(rct_doc["study"]["title"]), '"\\ud800"', 1
    )
    # when: a study is created from it
    response = api_as(make_user("alice")).post(
        "/api/studies/", body, content_type="application/json"
    )
    # then: the parser names the field; nothing is saved
    assert response.status_code == 400
    assert "protocol.study.title" in response.json()["detail"]
    assert "invalid Unicode" in response.json()["detail"]
    assert Study.objects.count() == 0


# --- participant chat ----------------------------------------------------------------------


@pytest.fixture
def me(recruiting_study, enroll, client):
    participant = enroll(recruiting_study)
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()
    return participant


def _send(client, conversation, raw_body: str):
    return client.post(
        f"/p/chat/c/{conversation.pk}/send/", raw_body, content_type="application/json"
    )


def test_a_lone_surrogate_in_a_chat_message_is_a_400_naming_the_field(client, me):
    # given: a participant in a conversation
    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    # when: the message text is a lone surrogate (valid JSON, not valid Unicode)
    response = _send(client, conversation, '{"text": "hello \\ud800", "client_request_id": "r1"}')
    # then: 400 naming the field, nothing stored
    assert response.status_code == 400
    assert response.json()["field"] == "text"
    assert Message.objects.count() == 0


def test_a_huge_tz_offset_is_a_400_naming_the_field(client, me):
    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    response = _send(client, conversation, '{"text": "hello", "tz_offset": 1e20}')
    assert response.status_code == 400
    assert response.json()["field"] == "tz_offset"
    assert "between -960 and 960" in response.json()["detail"]
    assert Message.objects.count() == 0


def test_a_crisis_message_under_a_stored_huge_response_time_is_stored_with_resources(
    client, me, recruiting_study, django_capture_on_commit_callbacks
):
    # given: a study whose stored protocol predates the maximum (written around validation)
    version = recruiting_study.current_version
    content = version.content
    content["safety"]["response_time_hours"] = 1e308
    ProtocolVersion.objects.filter(pk=version.pk).update(content=content)
    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    # when: the participant writes a crisis message
    with django_capture_on_commit_callbacks(execute=True):
        response = _send(client, conversation, json.dumps({"text": "I want to kill myself"}))
    # then: the message is stored, the resources are shown, and the alert is due in at most
    # the schema's 720 hours instead of overflowing
    assert response.status_code == 201
    assert response.json()["crisis"]["html"]
    message = Message.objects.get(role="user")
    alert = SafetyAlert.objects.get(message=message)
    assert (alert.due_at - alert.created_at).total_seconds() == 720 * 3600


def test_a_stored_huge_block_size_allocates_from_a_bounded_block():
    # given: arms of equal weight and a block size stored before the schema's maximum
    arms = [allocation.ArmWeight("a", 1), allocation.ArmWeight("b", 1)]
    # when: the first block is drawn
    block, elapsed, _ = measured(lambda: allocation.make_block("seed", "", 0, arms, [10_000_000]))
    # then: it holds at most the schema's maximum, balanced
    assert len(block) == 1000 and block.count("a") == 500
    assert elapsed < 1


# --- smaller inputs around the protocol and the API ----------------------------------------


def test_the_designer_screener_yaml_refuses_aliases_like_the_protocol():
    from studyplatform.console.forms import ScreenerSectionForm

    # given: a screener questions box whose YAML uses an anchor and an alias
    form = ScreenerSectionForm({"questions": "- &q {key: age}\n- *q\n", "eligibility": ""})
    # when/then: the form refuses it with the line, before expanding anything
    assert not form.is_valid()
    assert form.errors["questions"] == [
        "Invalid YAML on line 1: YAML anchors and aliases are not allowed"
    ]


def test_an_uploaded_protocol_over_the_size_limit_is_refused_unread(client, owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(owner)
    upload = SimpleUploadedFile("big.yaml", b"#" * (257 * 1024), "application/x-yaml")
    page = client.post(reverse("console:study_new"), {"source": "upload", "file": upload})
    assert page.status_code == 400
    assert "The file is too large (at most 256 KB)." in page.content.decode()
    assert Study.objects.count() == 0


def test_a_change_note_over_its_limit_is_a_400_naming_the_field(study, owner, api_as, rct_doc):
    response = api_as(owner).put(
        f"/api/studies/{study.slug}/protocol/",
        {"protocol": rct_doc, "change_note": "n" * 1001},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["change_note"] == ["Ensure this field has no more than 1000 characters."]
    assert study.versions.count() == 1


@pytest.mark.parametrize("wave", ["²", "9" * 5000])
def test_an_unreadable_wave_filter_matches_nothing_instead_of_failing(study, owner, api_as, wave):
    response = api_as(owner).get(f"/api/studies/{study.slug}/invitations/", {"wave": wave})
    assert response.status_code == 200 and response.json() == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"change_note": NaN, "yaml": "a: 1"}', "the body: is not valid JSON (NaN is not valid"),
        ('{"yaml": "a: 1", "change_note": "\\u0000"}', "change_note: must not contain NUL"),
        ('{"protocol": {"n": 1e400}}', "protocol.n: must be a finite number"),
        ('{"protocol": {"n": 100000000000000000000}}', "protocol.n: is out of range"),
    ],
)
def test_the_api_parser_refuses_unstorable_json_naming_the_field(make_user, api_as, raw, expected):
    response = api_as(make_user("alice")).post(
        "/api/protocol/validate/", raw, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error - " + expected)


@pytest.mark.parametrize(
    "url",
    [
        "/api/studies/{slug}/participants/?participant=%00",
        "/api/studies/{slug}/invitations/?participant=x%00y",
        "/api/studies/{slug}/conversations/?imported=1&%00=1",
    ],
)
def test_a_nul_character_in_a_query_string_is_a_400(study, owner, api_as, url):
    # PostgreSQL refused the value inside the query (a 500); SQLite happened to accept it.
    response = api_as(owner).get(url.format(slug=study.slug))
    assert response.status_code == 400
    assert "must not contain NUL characters" in response.json()["detail"]
