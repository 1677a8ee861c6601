"""Issue 12: role permissions match the README's role table, including what blinds allocation.

A hand-written matrix (deliberately not derived from roles.py): for every role, every page and
API endpoint that shows arms, model names, per-model counts or system prompts either answers
2xx with the content (roles allowed to see it) or 403 / leaves the content out (blinded roles).

Decisions (README "Roles"): the monitor never sees arms, so the protocol document, its
versions and the arm list are closed to it (403), in the API and in the console; designer and
safety reviewer see the protocol (a designer edits the arms) but, like the monitor, never see
allocation: no per-arm figures, no per-model counts, no model names per message or participant.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from studyplatform.chat.models import Message
from studyplatform.chat.providers import StreamEnd
from studyplatform.chat.services import conversation_create, message_send, reply_finish
from tests.factories import launch_study

pytestmark = pytest.mark.django_db

ROLES = ["owner", "designer", "monitor", "analyst", "safety_reviewer"]
# Written out by hand from the README's role table and role descriptions.
SEES_PROTOCOL = {"owner": True, "designer": True, "monitor": False, "analyst": True,
                 "safety_reviewer": True}  # fmt: skip
SEES_ALLOCATION = {"owner": True, "designer": False, "monitor": False, "analyst": True,
                   "safety_reviewer": False}  # fmt: skip
READS_CHAT = {"owner": True, "designer": False, "monitor": False, "analyst": True,
              "safety_reviewer": True}  # fmt: skip

MODELS = ("gpt-4o-2024-05-13", "gpt-4.1-2025-04-14")
PROMPT = "You are a friendly, helpful assistant."


@pytest.fixture
def live(study, owner, enroll, member_of):
    """A recruiting study, one member per role, and one participant with a model reply."""
    study = launch_study(study, owner)
    users = {"owner": owner}
    for role in ROLES[1:]:
        users[role] = member_of(study, role)
    participant = enroll(study)
    conversation = conversation_create(participant=participant)
    sent = message_send(participant=participant, conversation=conversation, text="hello there")
    arm = participant.allocation.arm
    reply_finish(
        reply=None,
        user_message=sent.message,
        arm=arm,
        text="Hi!",
        end=StreamEnd(
            finish_reason="stop",
            model_reported=f"{arm.model_name}-served",
            system_fingerprint="fp_blinding",
            response_id="r1",
            prompt_tokens=5,
            completion_tokens=2,
            usage_estimated=False,
        ),
        status=Message.Status.COMPLETE,
        upstream_sent_at=timezone.now(),
    )
    return study, users, participant, conversation


def _api(api_as, user, url):
    return api_as(user).get(url)


def _page(user, url):
    client = Client()
    client.force_login(user)
    return client.get(url)


@pytest.mark.parametrize("role", ROLES)
def test_arms_and_system_prompts_reach_only_roles_that_see_the_protocol(live, api_as, role):
    study, users, _participant, _conversation = live
    user = users[role]
    base = f"/api/studies/{study.slug}"
    for url in (
        f"{base}/arms/",
        f"{base}/protocol/",
        f"{base}/versions/",
        f"{base}/versions/1/",
        f"{base}/versions/1/diff/1/",
    ):
        response = _api(api_as, user, url)
        if SEES_PROTOCOL[role]:
            assert response.status_code == 200, (role, url)
        else:
            assert response.status_code == 403, (role, url)
            assert PROMPT not in response.content.decode()
    arms = _api(api_as, user, f"{base}/arms/")
    protocol = _api(api_as, user, f"{base}/protocol/")
    if SEES_PROTOCOL[role]:
        assert {a["model_name"] for a in arms.json()} == set(MODELS)
        assert PROMPT in arms.json()[0]["system_prompt"]
        assert PROMPT in protocol.json()["yaml"] and MODELS[0] in protocol.json()["yaml"]


@pytest.mark.parametrize("role", ROLES)
def test_the_console_designer_and_versions_show_arms_only_to_roles_that_see_the_protocol(
    live, role
):
    study, users, _participant, _conversation = live
    for page in ("design", "versions"):
        response = _page(users[role], f"/console/{study.slug}/{page}/")
        if SEES_PROTOCOL[role]:
            assert response.status_code == 200, (role, page)
        else:
            assert response.status_code == 403, (role, page)
            assert PROMPT not in response.content.decode()
    design = _page(users[role], f"/console/{study.slug}/design/").content.decode()
    if SEES_PROTOCOL[role]:
        assert PROMPT in design and MODELS[0] in design


@pytest.mark.parametrize("role", ROLES)
def test_chat_stats_give_per_arm_and_per_model_counts_only_with_allocation(live, api_as, role):
    study, users, _participant, _conversation = live
    response = _api(api_as, users[role], f"/api/studies/{study.slug}/chat-stats/")
    assert response.status_code == 200
    body = response.json()
    text = response.content.decode()
    assert body["total"]["assistant_replies"] == 1
    if SEES_ALLOCATION[role]:
        assert set(body["arms"]) == {"legacy", "current"}
        served = next(iter(body["total"]["models_reported"]))
        assert served.endswith("-served") and body["total"]["system_fingerprints"]
    else:
        assert "arms" not in body
        assert "models_reported" not in body["total"]
        assert "system_fingerprints" not in body["total"]
        assert "-served" not in text and "fp_blinding" not in text


@pytest.mark.parametrize("role", ROLES)
def test_the_dashboard_shows_arm_balance_and_models_only_with_allocation(live, role):
    study, users, participant, _conversation = live
    response = _page(users[role], f"/console/{study.slug}/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    served = f"{participant.allocation.arm.model_name}-served"
    if SEES_ALLOCATION[role]:
        assert served in html and 'id="arm-balance-title"' in html
    else:
        assert served not in html and 'id="arm-balance-title"' not in html
        assert not any(model in html for model in MODELS)


@pytest.mark.parametrize("role", ROLES)
def test_participant_lists_name_the_arm_only_with_allocation(live, api_as, role):
    study, users, participant, _conversation = live
    arm = participant.allocation.arm.key
    rows = _api(api_as, users[role], f"/api/studies/{study.slug}/participants/")
    page = _page(users[role], f"/console/{study.slug}/participants/")
    assert rows.status_code == 200 and page.status_code == 200
    [row] = [r for r in rows.json() if r["code"] == participant.code]
    html = page.content.decode()
    if SEES_ALLOCATION[role]:
        assert row["arm"] == arm
        assert f"<td>{arm}</td>" in html
    else:
        assert "arm" not in row
        assert f"<td>{arm}</td>" not in html


@pytest.mark.parametrize("role", ROLES)
def test_message_logs_name_the_model_only_with_allocation(live, api_as, role):
    study, users, participant, conversation = live
    url = f"/api/studies/{study.slug}/conversations/{conversation.pk}/"
    response = _api(api_as, users[role], url)
    if not READS_CHAT[role]:
        assert response.status_code == 403
        return
    assert response.status_code == 200
    text = response.content.decode()
    model = participant.allocation.arm.model_name
    if SEES_ALLOCATION[role]:
        assert model in text and f"{model}-served" in text
    else:
        assert not any(m in text for m in MODELS)
        assert "model_requested" not in text and "model_reported" not in text


def test_the_study_list_opens_the_dashboard_for_a_monitor(live):
    study, users, _participant, _conversation = live
    html = _page(users["monitor"], "/console/").content.decode()
    assert f'href="/console/{study.slug}/dashboard/"' in html
    assert f'href="/console/{study.slug}/design/"' not in html
    owner_html = _page(users["owner"], "/console/").content.decode()
    assert f'href="/console/{study.slug}/design/"' in owner_html
