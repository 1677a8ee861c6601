"""Who may open which console monitoring page: non-members get 404, members whose roles lack the
page's permission get 403, and blinded roles never see allocation."""

from __future__ import annotations

import pytest

from studyplatform.studies.services import study_create_from_protocol

pytestmark = pytest.mark.django_db

PAGES = ("dashboard", "participants", "safety", "team", "analyses", "exports")
# The status each role gets on each page (owner sees everything).
EXPECTED = {
    "owner": dict.fromkeys(PAGES, 200),
    "designer": {**dict.fromkeys(PAGES, 403), "dashboard": 200, "participants": 200, "team": 200},
    "monitor": {**dict.fromkeys(PAGES, 403), "dashboard": 200, "participants": 200, "team": 200},
    "analyst": {**dict.fromkeys(PAGES, 200), "safety": 403},
    "safety_reviewer": {**dict.fromkeys(PAGES, 403), "dashboard": 200, "participants": 200}
    | {"safety": 200, "team": 200},
}


def url(study, page: str) -> str:
    return f"/console/{study.slug}/{page}/"


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_reaches_exactly_the_pages_its_permissions_allow(
    role, recruiting_study, member_of, client
):
    # given: a member holding one role
    client.force_login(member_of(recruiting_study, role))
    # when / then
    got = {page: client.get(url(recruiting_study, page)).status_code for page in PAGES}
    assert got == EXPECTED[role]


def test_nobody_sees_another_study(recruiting_study, member_of, client, make_user, rct_doc):
    # given: the owner of a different study
    rct_doc["study"]["slug"] = "other-study"
    stranger = make_user("stranger")
    study_create_from_protocol(doc=rct_doc, author=stranger)
    client.force_login(stranger)
    # when / then: every page of the first study is a 404, as is an unknown slug
    for page in PAGES:
        assert client.get(url(recruiting_study, page)).status_code == 404
    assert client.get("/console/no-such-study/dashboard/").status_code == 404


def test_signed_out_visitors_are_sent_to_the_sign_in_page(recruiting_study, client):
    response = client.get(url(recruiting_study, "dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_a_monitor_sees_the_dashboard_but_not_the_arm_balance(
    recruiting_study, member_of, client, enroll
):
    # given: an enrolled participant and a monitor
    enroll(recruiting_study)
    client.force_login(member_of(recruiting_study, "monitor"))
    # when
    html = client.get(url(recruiting_study, "dashboard")).content.decode()
    # then: the balance is explicitly hidden and no arm key or model name leaks
    assert "Hidden for your role" in html
    assert 'id="arm-balance-title"' not in html
    main = html.split("<main>", 1)[1]
    for arm in recruiting_study.arms.all():
        # arm keys are ordinary words ("current"), so look for them where a chart or table
        # would put them
        for shape in (f">{arm.key}<", f"<title>{arm.key}", f"{arm.key}, "):
            assert shape not in main
        assert arm.model_name not in main


def test_an_analyst_sees_the_arm_balance_and_the_arm_column(
    recruiting_study, member_of, client, enroll
):
    participant = enroll(recruiting_study)
    client.force_login(member_of(recruiting_study, "analyst"))
    dashboard = client.get(url(recruiting_study, "dashboard")).content.decode()
    listing = client.get(url(recruiting_study, "participants")).content.decode()
    assert 'id="arm-balance-title"' in dashboard and "Hidden for your role" not in dashboard
    assert participant.allocation.arm.key in listing


def test_a_monitor_gets_403_on_the_safety_page_and_its_alerts(
    recruiting_study, member_of, client, enroll
):
    from studyplatform.safety.services import safety_alert_raise

    alert = safety_alert_raise(
        participant=enroll(recruiting_study),
        source="chat",
        severity="high",
        category="self_harm",
        excerpt="a secret excerpt",
        detector="lexicon",
    )
    client.force_login(member_of(recruiting_study, "monitor"))
    assert client.get(url(recruiting_study, "safety")).status_code == 403
    assert client.get(url(recruiting_study, f"safety/{alert.pk}")).status_code == 403
    assert client.post(url(recruiting_study, f"safety/{alert.pk}/acknowledge")).status_code == 403
    assert "a secret excerpt" not in client.get(url(recruiting_study, "dashboard")).content.decode()


def test_the_tab_bar_shows_only_the_tabs_a_role_allows(recruiting_study, member_of, client):
    client.force_login(member_of(recruiting_study, "monitor"))
    html = client.get(url(recruiting_study, "dashboard")).content.decode()
    nav = html.split('aria-label="Study pages"', 1)[1].split("</nav>", 1)[0]
    for shown in (">Overview<", ">Dashboard<", ">Participants<", ">Team<"):
        assert shown in nav
    # Design is hidden too: the monitor never sees arms, so the protocol is closed to it.
    hidden_tabs = (">Design<", ">Versions<", ">Safety<", ">Analyses<", ">Exports<", ">Pilot and")
    for hidden in hidden_tabs:
        assert hidden not in nav


def test_a_monitor_cannot_invite_members(recruiting_study, member_of, client):
    client.force_login(member_of(recruiting_study, "monitor"))
    response = client.post(
        url(recruiting_study, "team"), {"email": "x@example.org", "role": "owner"}
    )
    assert response.status_code == 403
