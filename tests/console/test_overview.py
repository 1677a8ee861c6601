"""The study overview (/console/<slug>/), the one tab bar on every study page, and analysis
reports inside the console frame."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from analysis.models import AnalysisRun
from analysis.services import analysis_run_create, analysis_run_execute
from studyplatform.studies.services import study_create_from_protocol

pytestmark = pytest.mark.django_db


def _tabs(html: str) -> list[str]:
    """The tab labels of the page's study tab bar, in order."""
    bar = html.split("data-study-tabs", 1)[1].split("</nav>", 1)[0]
    return re.findall(r"<a [^>]*>([^<]+)</a>", bar)


def test_the_owner_sees_status_version_arms_enrollment_alerts_and_next_steps(
    recruiting_study, owner, client, enroll
):
    enroll(recruiting_study)
    enroll(recruiting_study)
    client.force_login(owner)
    response = client.get(f"/console/{recruiting_study.slug}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Recruiting" in html
    version = recruiting_study.current_version.number
    assert re.search(rf"Protocol version</dt><dd>{version}</dd>", html)
    for arm in recruiting_study.arms.all():
        assert f'data-arm="{arm.key}"' in html and arm.model_name in html
    assert re.search(r'data-count="active"><dt>[^<]+</dt><dd>2</dd>', html)
    assert re.search(r'data-count="open-alerts"><dt>[^<]+</dt><dd>0</dd>', html)
    # a recruiting study's next step for its owner is the dashboard
    assert (
        reverse("console:monitor_dashboard", args=[recruiting_study.slug])
        in html.split('data-overview="next-steps"')[1]
    )
    assert _tabs(html)[0] == "Overview"


def test_a_draft_study_points_its_owner_to_the_designer_and_the_launch_page(study, owner, client):
    client.force_login(owner)
    steps = client.get(f"/console/{study.slug}/").content.decode().split('data-overview="next')[1]
    assert reverse("console:design", args=[study.slug]) in steps
    assert reverse("console:launch", args=[study.slug]) in steps
    assert reverse("console:monitor_dashboard", args=[study.slug]) not in steps


def test_a_monitor_sees_the_overview_without_arms_or_alerts(recruiting_study, member_of, client):
    client.force_login(member_of(recruiting_study, "monitor"))
    html = client.get(f"/console/{recruiting_study.slug}/").content.decode()
    assert 'data-overview="arms"' not in html
    assert not any(arm.model_name in html for arm in recruiting_study.arms.all())
    assert 'data-count="open-alerts"' not in html
    assert 'data-count="active"' in html
    assert "Design" not in _tabs(html) and "Safety" not in _tabs(html)


def test_another_users_study_overview_is_a_404(recruiting_study, client, make_user, rct_doc):
    rct_doc["study"]["slug"] = "other-study"
    stranger = make_user("stranger")
    study_create_from_protocol(doc=rct_doc, author=stranger)
    client.force_login(stranger)
    assert client.get(f"/console/{recruiting_study.slug}/").status_code == 404
    assert client.get("/console/other-study/").status_code == 200
    client.logout()
    assert client.get("/console/other-study/").status_code == 302


@pytest.mark.parametrize(
    "page",
    [
        "",
        "design/",
        "versions/",
        "launch/",
        "dashboard/",
        "safety/",
        "analyses/",
        "classifiers/",
        "team/",
    ],
)
def test_every_study_page_has_the_same_tab_bar(recruiting_study, owner, client, page):
    client.force_login(owner)
    html = client.get(f"/console/{recruiting_study.slug}/{page}").content.decode()
    assert html.count("data-study-tabs") == 1
    assert _tabs(html) == [
        "Overview",
        "Design",
        "Versions",
        "Pilot and launch",
        "Dashboard",
        "Participants",
        "Safety",
        "Analyses",
        "Classifiers",
        "Exports",
        "Team",
    ]


# --- analysis reports in the console frame ---------------------------------------------------


@pytest.fixture
def done_run(recruiting_study, owner):
    run = analysis_run_execute(
        run=analysis_run_create(study=recruiting_study, created_by=owner, enqueue=False)
    )
    assert run.status == AnalysisRun.Status.DONE, run.error
    return run


def test_the_report_opens_inside_the_console_with_the_tab_bar(
    recruiting_study, owner, client, done_run
):
    client.force_login(owner)
    slug = recruiting_study.slug
    # the analyses page links to the console report page, not to the API
    analyses = client.get(reverse("console:monitor_analyses", args=[slug])).content.decode()
    page_url = reverse("console:monitor_analysis_report", args=[slug, done_run.pk])
    assert f'href="{page_url}"' in analyses and "/api/" not in analyses
    html = client.get(page_url).content.decode()
    assert "data-study-tabs" in html
    document_url = reverse("console:monitor_analysis_report_document", args=[slug, done_run.pk])
    assert f'src="{document_url}"' in html
    document = client.get(document_url)
    assert document.status_code == 200
    assert document.content.decode() == done_run.report_html
    # framable by the console's own page only, and still self-contained (no script runs)
    assert document["X-Frame-Options"] == "SAMEORIGIN"
    policy = document["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in policy and "script-src 'none'" in policy


def test_an_unfinished_run_has_no_report_document(recruiting_study, owner, client):
    run = analysis_run_create(study=recruiting_study, created_by=owner, enqueue=False)
    client.force_login(owner)
    slug = recruiting_study.slug
    page = client.get(reverse("console:monitor_analysis_report", args=[slug, run.pk]))
    assert page.status_code == 200 and "data-report-frame" not in page.content.decode()
    document_url = reverse("console:monitor_analysis_report_document", args=[slug, run.pk])
    assert client.get(document_url).status_code == 404


def test_report_pages_follow_the_analysis_permission(
    recruiting_study, member_of, client, make_user, done_run
):
    slug = recruiting_study.slug
    urls = [
        reverse("console:monitor_analysis_report", args=[slug, done_run.pk]),
        reverse("console:monitor_analysis_report_document", args=[slug, done_run.pk]),
    ]
    client.force_login(member_of(recruiting_study, "monitor"))
    assert [client.get(u).status_code for u in urls] == [403, 403]
    client.force_login(make_user("stranger"))
    assert [client.get(u).status_code for u in urls] == [404, 404]
    client.force_login(member_of(recruiting_study, "analyst"))
    assert [client.get(u).status_code for u in urls] == [200, 200]
