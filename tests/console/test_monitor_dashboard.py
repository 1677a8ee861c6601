"""The dashboard's numbers on hand-built data (funnel, compliance cells, chat, safety) and the
pure SVG charts."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from studyplatform.chat.models import Conversation, Message
from studyplatform.console import charts
from studyplatform.console import selectors as sel
from studyplatform.participants.models import FunnelCount
from studyplatform.participants.services import participant_withdraw
from surveys.models import Invitation

pytestmark = pytest.mark.django_db


def invite(participant, entry, wave, status, at):
    return Invitation.objects.create(
        participant=participant,
        study=participant.study,
        entry_key=entry,
        occurrence_key=f"{entry}-{wave}",
        wave=wave,
        instruments=["who5"],
        protocol_version=participant.study.current_version,
        status=status,
        opens_at=at,
        closes_at=at + dt.timedelta(hours=48),
        created_at=at,
    )


def test_the_funnel_counts_stages_and_what_became_of_participants(
    recruiting_study, enroll, owner, client
):
    # given: anonymous counts over two days, three consents (enrolment counts its own), one
    # withdrawal
    today = timezone.localdate()
    yesterday = today - dt.timedelta(days=1)
    for day, stage, n in [
        (yesterday, "visited", 7),
        (today, "visited", 5),
        (yesterday, "screened", 4),
        (today, "screened", 3),
        (today, "eligible", 3),
        (today, "ineligible:adult", 2),
    ]:
        FunnelCount.objects.create(study=recruiting_study, day=day, stage=stage, count=n)
    people = [enroll(recruiting_study) for _ in range(3)]
    participant_withdraw(participant=people[0], mode="keep", by="participant")
    # when
    funnel = sel.funnel(recruiting_study, today=today)
    client.force_login(owner)
    html = client.get(f"/console/{recruiting_study.slug}/dashboard/").content.decode()
    # then
    assert funnel.totals == {"visited": 12, "screened": 7, "eligible": 3, "consented": 3}
    assert funnel.ineligible_by_rule == {"adult": 2}
    assert funnel.status_counts == {"active": 2, "completed": 0, "withdrawn": 1}
    assert funnel.days == [yesterday, today]
    assert funnel.daily["visited"] == [7, 5] and funnel.daily["consented"] == [0, 3]
    totals = dict(re.findall(r"<dt>(\w+)</dt><dd data-stage=\"\d\">(\d+)</dd>", html))
    assert totals == {
        "Visited": "12",
        "Screened": "7",
        "Eligible": "3",
        "Consented": "3",
        "Active": "2",
        "Completed": "0",
        "Withdrawn": "1",
    }
    assert "<title>Visited, " + yesterday.strftime("%m-%d") + ": 7</title>" in html


def test_compliance_cells_show_each_participants_waves(recruiting_study, enroll):
    # given: two participants with hand-made invitations in every state
    now = timezone.now()
    first, second = enroll(recruiting_study), enroll(recruiting_study)
    invite(first, "baseline", None, "completed", now)
    invite(first, "weekly", 1, "expired", now)
    invite(second, "baseline", None, "sent", now)
    invite(second, "weekly", 1, "scheduled", now)
    # when
    result = sel.compliance(recruiting_study)
    # then: newest participant first; columns in the protocol's schedule order
    assert result.participants == [second.code, first.code]
    assert result.columns == [("baseline", None), ("weekly", 1)]
    assert result.cells == [["open", "not_yet"], ["completed", "expired"]]
    waves = {w["label"]: (w["invited"], w["completed"], w["rate"]) for w in result.waves}
    assert waves == {"baseline": (2, 1, 0.5), "weekly 1": (1, 0, 0.0)}
    assert not result.limited


def test_the_heatmap_is_limited_to_the_most_recent_participants_with_a_note(
    recruiting_study, enroll, owner, client
):
    people = [enroll(recruiting_study) for _ in range(3)]
    for p in people:
        invite(p, "baseline", None, "completed", timezone.now())
    result = sel.compliance(recruiting_study, limit=2)
    assert result.limited and result.total_participants == 3
    assert result.participants == [people[2].code, people[1].code]
    assert result.waves[0]["completed"] == 3  # rates still count everyone


def test_the_dashboard_lists_one_heatmap_row_per_participant(
    recruiting_study, enroll, owner, client
):
    now = timezone.now()
    first, second = enroll(recruiting_study), enroll(recruiting_study)
    invite(first, "baseline", None, "completed", now)
    invite(second, "baseline", None, "expired", now)
    client.force_login(owner)
    html = client.get(f"/console/{recruiting_study.slug}/dashboard/").content.decode()
    assert f"<title>{first.code}, baseline: Completed</title>" in html
    assert f"<title>{second.code}, baseline: Expired</title>" in html


def test_an_empty_study_says_how_to_recruit(recruiting_study, owner, client, settings):
    settings.SITE_URL = "https://study.example.org"
    client.force_login(owner)
    for page in ("dashboard", "participants"):
        html = client.get(f"/console/{recruiting_study.slug}/{page}/").content.decode()
        assert "No participants yet — share this link:" in html
        assert f"https://study.example.org/s/{recruiting_study.slug}/" in html


def test_chat_volume_and_model_stats_are_per_arm_only_when_unblinded(recruiting_study, enroll):
    # given: one participant's two messages and a reply
    participant = enroll(recruiting_study)
    arm = participant.allocation.arm
    now = timezone.now()
    conversation = Conversation.objects.create(
        participant=participant, arm=arm, created_at=now, updated_at=now
    )
    for role, latency in (("user", None), ("assistant", 800), ("user", None)):
        Message.objects.create(
            conversation=conversation,
            participant=participant,
            role=role,
            status="complete",
            created_at=now,
            latency_ms=latency,
            model_reported="model-x-2024" if role == "assistant" else "",
        )
    # when
    days, per_arm = sel.chat_volume(recruiting_study, today=timezone.localdate(), by_arm=True)
    _, total = sel.chat_volume(recruiting_study, today=timezone.localdate(), by_arm=False)
    blinded = sel.model_stats(recruiting_study, by_arm=False)
    unblinded = {row["arm"]: row for row in sel.model_stats(recruiting_study, by_arm=True)}
    # then
    assert days == [timezone.localdate()]
    assert per_arm == {arm.key: [2]} and total == {"all": [2]}
    assert len(blinded) == 1 and blinded[0]["arm"] == "" and blinded[0]["latency_ms_p50"] == 800
    assert "models_reported" not in blinded[0]  # counted per model they are counted per arm
    assert unblinded[arm.key]["models_reported"] == {"model-x-2024": 1}


def test_safety_counts_time_to_acknowledge_against_the_response_time(
    recruiting_study, enroll, owner
):
    from studyplatform.safety.services import alert_acknowledge, safety_alert_raise

    participant = enroll(recruiting_study)
    now = timezone.now()

    def alert(hours_ago):
        return safety_alert_raise(
            participant=participant,
            source="chat",
            severity="high",
            category="self_harm",
            excerpt="x",
            detector="lexicon",
            now=now - dt.timedelta(hours=hours_ago),
        )

    late, quick, _overdue = alert(30), alert(5), alert(20)
    alert_acknowledge(alert=late, actor=owner, now=now - dt.timedelta(hours=10))  # 20 h wait
    alert_acknowledge(alert=quick, actor=owner, now=now - dt.timedelta(hours=4))  # 1 h wait
    summary = sel.safety_summary(recruiting_study, now=now)
    assert (summary.open, summary.acknowledged, summary.overdue) == (1, 2, 1)
    assert summary.response_time_hours == 12
    assert (summary.answered, summary.answered_in_time) == (2, 1)
    assert summary.median_hours_to_ack == 10.5


def test_the_dashboard_runs_a_fixed_number_of_queries(recruiting_study, enroll, owner, client):
    # An N+1 shows as a query count that grows with the cohort, so compare two cohort sizes
    # rather than trusting a ceiling that leaves room for one.
    def cohort_of(n):
        while recruiting_study.participants.count() < n:
            participant = enroll(recruiting_study)
            invite(participant, "baseline", None, "completed", timezone.now())
            now = timezone.now()
            conversation = Conversation.objects.create(
                participant=participant,
                arm=participant.allocation.arm,
                created_at=now,
                updated_at=now,
            )
            Message.objects.create(
                conversation=conversation,
                participant=participant,
                role="user",
                content="hi",
                status="complete",
                created_at=now,
            )

    def dashboard_queries():
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/console/{recruiting_study.slug}/dashboard/").status_code == 200
        return len(queries.captured_queries)

    # given: the owner has loaded the page once (per-user caches are warm)
    client.force_login(owner)
    cohort_of(3)
    dashboard_queries()
    # when: the page is loaded for 3 participants, then for 30
    small = dashboard_queries()
    cohort_of(30)
    large = dashboard_queries()
    # then: the same number of queries
    assert large == small


# --- pure charts ------------------------------------------------------------------------------


def test_charts_escape_text_and_title_every_mark():
    svg = charts.bar_chart(
        chart_id="c", title="<b>Msgs</b>", x_labels=["a&b", "c"], series=[("s<1>", [1, 2])]
    )
    assert "<b>" not in svg and "&lt;b&gt;Msgs&lt;/b&gt;" in svg
    assert svg.count("<rect") == 2 and "<title>s&lt;1&gt;, a&amp;b: 1</title>" in svg
    assert 'aria-labelledby="c-title"' in svg and "<script" not in svg


def test_heatmap_names_each_cell_state_in_words():
    svg = charts.heatmap(
        chart_id="h",
        title="Compliance",
        row_labels=["P-1"],
        col_labels=["baseline", "weekly 1"],
        cells=[["completed", "not_yet"]],
        states={"completed": ("#00f", "Completed"), "not_yet": ("#eee", "Not yet")},
    )
    assert "<title>P-1, baseline: Completed</title>" in svg
    assert "<title>P-1, weekly 1: Not yet</title>" in svg


def test_empty_charts_say_so_and_axes_round_up():
    assert "No data yet." in charts.line_chart(chart_id="l", title="t", x_labels=[], series=[])
    assert [charts.nice_max(v) for v in (0, 3, 7, 12, 101)] == [1, 5, 10, 20, 200]
    line = charts.line_chart(chart_id="l", title="t", x_labels=["d1"], series=[("s", [4])])
    assert "<circle" in line and "<polyline" not in line  # one point draws no line
