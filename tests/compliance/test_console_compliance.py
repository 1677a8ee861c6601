"""The console dashboard's usage-requirement section: per-participant standing and per-period
counts, for members only, in a fixed number of queries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from studyplatform.compliance import services
from studyplatform.studies.services import study_create_from_protocol
from tests.compliance.conftest import T0, local, requirement_doc

pytestmark = pytest.mark.django_db


def dashboard(client, study) -> str:
    response = client.get(f"/console/{study.slug}/dashboard/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_dashboard_shows_each_participants_days_and_the_counts_per_day(
    req_study, enroll, chat, owner, client
):
    # given: Ana met day 0 and missed day 1; Bruno missed both (all 4 counted days are over)
    ana, bruno = enroll(req_study, now=T0), enroll(req_study, now=T0)
    chat(ana, local(0, 12), 5)
    chat(bruno, local(1, 12), 2)
    for p in (ana, bruno):
        services.compliance_refresh(participant=p, now=local(5, 12), since=dt.date.min)
    client.force_login(owner)
    # when
    html = dashboard(client, req_study)
    # then: the grid says each cell in words, the table each participant's standing
    assert 'id="requirements"' in html
    assert f"<title>{ana.code}, D1: Met</title>" in html
    assert f"<title>{ana.code}, D2: Missed</title>" in html
    assert f"<title>{bruno.code}, D1: Missed</title>" in html
    row = html.split(f'<tr data-code="{ana.code}">')[1].split("</tr>")[0]
    assert "<td>1</td>" in row and "<td>4</td>" in row and "out of reach" in row
    periods = html.split('id="requirement-periods"')[1].split("</table>")[0]
    assert '<th scope="row">D1</th><td>1</td><td>2</td>' in periods
    assert '<th scope="row">D2</th><td>0</td><td>2</td>' in periods


def test_another_studys_researcher_cannot_see_it(req_study, enroll, make_user, client, rct_doc):
    participant = enroll(req_study, now=T0)
    stranger = make_user("stranger")
    study_create_from_protocol(
        doc=requirement_doc(rct_doc) | {"study": {**rct_doc["study"], "slug": "stranger-study"}},
        author=stranger,
    )
    client.force_login(stranger)
    response = client.get(f"/console/{req_study.slug}/dashboard/")
    assert response.status_code == 404
    assert participant.code not in response.content.decode()


def test_a_study_without_requirements_has_no_section(recruiting_study, owner, client):
    client.force_login(owner)
    assert 'id="requirements"' not in dashboard(client, recruiting_study)


def test_the_section_costs_the_same_queries_for_more_participants(
    req_study, enroll, chat, owner, client
):
    client.force_login(owner)

    def queries_with(n: int) -> int:
        while req_study.participants.count() < n:
            p = enroll(req_study, now=T0)
            chat(p, local(0, 12), 5)
            services.compliance_refresh(participant=p, now=local(5, 12), since=dt.date.min)
        with CaptureQueriesContext(connection) as captured:
            dashboard(client, req_study)
        return len(captured)

    assert queries_with(2) == queries_with(5)
