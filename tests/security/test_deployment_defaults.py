"""Issue 12, "low" row, deployment part: DEBUG defaults to false; a Content-Security-Policy
without inline scripts on every page; HTTPS redirect, HSTS and the TLS proxy header from the
environment; `check --deploy` clean under the README's production environment; API docs with
no CDN; absolute links https behind a TLS proxy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.staticfiles import finders
from django.urls import reverse

from studyplatform.participants.session import SESSION_KEY

ROOT = Path(__file__).resolve().parents[2]

# Every variable the settings read for security; a subprocess starts from none of them.
_SECURITY_VARS = (
    "DEBUG",
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEY",
    "ALLOWED_HOSTS",
    "SITE_URL",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "BEHIND_TLS_PROXY",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SERVE_STATIC",
)


def run_python(code: str, tmp_path: Path, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _SECURITY_VARS}
    env.update(
        DJANGO_SETTINGS_MODULE="studyplatform.settings",
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def production_env() -> dict[str, str]:
    """The README's production environment (the security part of it)."""
    return {
        "DEBUG": "false",
        "SECRET_KEY": "k" * 10 + "Jx3vQ9rT2mW8yB4nK7pL1sD6fG0hZ5cV8uE2aN4oI9wY3tR7qM",
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "study.example.org",
        "SITE_URL": "https://study.example.org",
        "BEHIND_TLS_PROXY": "true",
        "TRUSTED_PROXIES": "10.0.0.2",
    }


# --- DEBUG defaults to false ---------------------------------------------------------------------


def test_without_debug_set_the_platform_refuses_to_start_on_the_development_keys(tmp_path):
    # given: an environment that sets neither DEBUG nor any key (a forgetful deployment)
    # when: Django starts
    result = run_python("import django; django.setup(); print('started')", tmp_path)
    # then: it is production, so it refuses the public development keys and says how to develop
    assert result.returncode != 0
    assert "Refusing to start with DEBUG=False: SECRET_KEY must be set" in result.stderr
    assert "DEBUG is not set, which means production; set DEBUG=true for development" in (
        result.stderr
    )


def test_without_debug_set_but_with_real_keys_the_settings_are_production(tmp_path):
    # given: real keys, DEBUG unset
    env = production_env()
    del env["DEBUG"]
    # when: the settings load
    result = run_python(
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)",
        tmp_path,
        **env,
    )
    # then: debug is off and HTTPS is enforced (redirect, one year of HSTS, secure cookies)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "31536000", "True", "True", "True"]


def test_development_has_none_of_the_https_enforcement(tmp_path):
    result = run_python(
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)",
        tmp_path,
        DEBUG="true",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "0", "None"]


def test_the_launcher_and_the_test_plugin_ask_for_development_themselves():
    # `make run` and pytest set DEBUG=true for themselves unless the user chose a value.
    launcher = (ROOT / "studyplatform" / "launcher.py").read_text()
    assert 'os.environ.setdefault("DEBUG", "true")' in launcher
    assert os.environ["DEBUG"] == "true"  # set by studyplatform.core.pytest_plugin


# --- check --deploy ------------------------------------------------------------------------------


def test_check_deploy_prints_no_warnings_under_the_documented_production_environment(tmp_path):
    # given: the README's production environment
    # when: Django's deployment checks run (drf-spectacular's schema checks included)
    result = run_python(
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        tmp_path,
        **production_env(),
    )
    # then: no warning at all
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "WARNING" not in output


def test_check_deploy_warns_when_email_links_would_be_plain_http(tmp_path):
    env = {**production_env(), "SITE_URL": "http://study.example.org"}
    result = run_python(
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy'])",
        tmp_path,
        **env,
    )
    assert "(studyplatform.W001) SITE_URL is 'http://study.example.org'" in result.stderr


# --- HTTPS redirect, HSTS, TLS proxy -------------------------------------------------------------


def test_behind_a_tls_proxy_x_forwarded_proto_makes_absolute_links_https(tmp_path):
    # given: the production environment behind a TLS-terminating proxy
    # when: a request arrives over plain HTTP from the proxy with X-Forwarded-Proto: https
    result = run_python(
        "import django; django.setup(); from django.test import RequestFactory; "
        "r = RequestFactory().get('/p/', HTTP_HOST='study.example.org', "
        "HTTP_X_FORWARDED_PROTO='https'); "
        "print(r.is_secure(), r.build_absolute_uri('/p/r/token/'))",
        tmp_path,
        **production_env(),
    )
    # then: Django sees HTTPS and builds https links
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "https://study.example.org/p/r/token/"]


@pytest.mark.django_db
def test_a_pilot_link_built_behind_the_proxy_is_https(settings, api_as, study, owner):
    # given: the proxy header is trusted (BEHIND_TLS_PROXY=true) and the study is piloting
    from studyplatform.studies.services import study_transition

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    study_transition(study=study, to="piloting", actor=owner)
    # when: a researcher creates a pilot invitation through the proxy
    response = api_as(owner).post(
        f"/api/studies/{study.slug}/pilot-invites/",
        {"label": "Ana"},
        format="json",
        REMOTE_ADDR="10.0.0.2",
        HTTP_HOST="testserver",  # the proxy passes the public Host on
        HTTP_X_FORWARDED_PROTO="https",
    )
    # then: the link the researcher copies is https
    assert response.status_code == 201, response.content
    assert response.json()["link"].startswith(f"https://testserver/s/{study.slug}/?pilot=")


@pytest.mark.django_db
def test_a_forwarded_proto_from_outside_the_trusted_proxies_is_not_believed(settings, client):
    # given: production behind a TLS proxy at 10.0.0.2, with the HTTPS redirect on
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    settings.SECURE_SSL_REDIRECT = True
    # when: a client reaching uvicorn directly claims HTTPS over plain HTTP
    direct = client.get(
        "/accounts/login/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https"
    )
    # then: it is treated as plain HTTP and redirected, while the proxy's own request is served
    assert direct.status_code == 301
    assert direct["Location"] == "https://testserver/accounts/login/"
    proxied = client.get("/accounts/login/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200


@pytest.mark.django_db
def test_without_the_proxy_setting_a_forwarded_proto_header_is_not_believed(api_as, study, owner):
    from studyplatform.studies.services import study_transition

    study_transition(study=study, to="piloting", actor=owner)
    response = api_as(owner).post(
        f"/api/studies/{study.slug}/pilot-invites/",
        {"label": "Ana"},
        format="json",
        HTTP_HOST="testserver",
        HTTP_X_FORWARDED_PROTO="https",
    )
    assert response.json()["link"].startswith("http://testserver/")


@pytest.mark.django_db
def test_https_redirect_and_hsts_in_production_but_healthz_answers_over_http(settings, client):
    # given: production's transport settings
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # when/then: a plain-HTTP page request is redirected to HTTPS
    page = client.get("/accounts/login/")
    assert page.status_code == 301
    assert page["Location"] == "https://testserver/accounts/login/"
    # and an HTTPS response carries HSTS
    secure = client.get("/accounts/login/", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    # while a load balancer's plain-HTTP health probe is answered, not redirected
    # (200 or 503 depending on whether this test run has a worker; never a redirect)
    probe = client.get("/healthz")
    assert probe.status_code in (200, 503)
    assert not probe.has_header("Location") and probe["Content-Type"] == "application/json"


# --- Content-Security-Policy ---------------------------------------------------------------------


def csp_directives(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


class _InlineCodeFinder(HTMLParser):
    """Collects what the policy forbids: inline scripts (other than JSON data blocks), event
    handler attributes, javascript: URLs, inline <style> elements and style attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self.styles: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.handlers.append(f"<{tag} {name}={value!r}>")
            if name == "style":
                self.styles.append(f"<{tag} style={value!r}>")
        inline = tag == "script" and not attributes.get("src")
        if inline and attributes.get("type") != "application/json":
            self.scripts.append(f"<script {attributes}>")
        if tag == "style":
            self.styles.append("<style>")


def inline_code(html: str) -> _InlineCodeFinder:
    finder = _InlineCodeFinder()
    finder.feed(html)
    return finder


def participant_login(client, participant) -> None:
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


@pytest.fixture
def crawl(client, django_user_model, recruiting_study, owner, enroll):
    """Every kind of HTML page, fetched as the person who sees it: (url, response) pairs."""
    from studyplatform.chat.services import conversation_create

    slug = recruiting_study.slug
    pages = []

    def get(url, **extra):
        response = client.get(url, **extra)
        assert response.status_code == 200, (url, response.status_code)
        pages.append((url, response))

    # anonymous: home, sign-in, sign-up, the study's public pages, the API docs
    for url in (
        "/",
        "/accounts/login/",
        "/accounts/signup/",
        "/api-auth/login/",
        f"/s/{slug}/",
        "/p/signin/",
    ):
        get(url)
    client.post(f"/s/{slug}/screener/", {"age": "34", "uses_chatbots": "yes", "gender": "man"})
    get(f"/s/{slug}/consent/")
    get("/api/docs/")

    # a participant: home, chat, memory, data, password, time zone, withdrawal, consent copy
    participant = enroll(recruiting_study)
    participant_login(client, participant)
    conversation = conversation_create(participant=participant)
    for url in (
        "/p/",
        "/p/chat/",
        f"/p/chat/c/{conversation.pk}/",
        "/p/chat/memory/",
        "/p/chat/import/",
        "/p/data/",
        "/p/password/",
        "/p/timezone/",
        "/p/withdraw/",
    ):
        get(url)
    client.logout()

    # the researcher: console design and monitoring pages, admin, browsable API
    owner.is_staff = owner.is_superuser = True
    owner.save()
    client.force_login(owner)
    for name, args in (
        ("console:study_list", ()),
        ("console:study_new", ()),
        ("console:design", (slug,)),
        ("console:versions", (slug,)),
        ("console:launch", (slug,)),
        ("console:calendar", (slug,)),
        ("console:monitor_dashboard", (slug,)),
        ("console:monitor_participants", (slug,)),
        ("console:monitor_safety", (slug,)),
        ("console:monitor_analyses", (slug,)),
        ("console:monitor_exports", (slug,)),
        ("console:monitor_team", (slug,)),
    ):
        get(reverse(name, args=args))
    get(reverse("console:calendar", args=[slug]) + "?embed=1")
    for page in ("study", "screener", "consent"):
        get(reverse("console:preview", args=[slug, page]))
    get("/admin/")
    get("/admin/studies/study/")
    get("/api/studies/", HTTP_ACCEPT="text/html")
    return pages


@pytest.mark.django_db
def test_every_page_carries_a_content_security_policy_without_inline_scripts(crawl):
    for url, response in crawl:
        directives = csp_directives(response)
        assert directives["script-src"] == ["'self'"], url
        assert directives["style-src"] == ["'self'"], url
        assert directives["object-src"] == ["'none'"], url
        assert directives["base-uri"] == ["'none'"], url
        assert directives["form-action"] == ["'self'"], url
        assert directives["connect-src"] == ["'self'"], url
        expected_ancestors = "'self'" if "/preview/" in url or "/calendar/" in url else "'none'"
        assert directives["frame-ancestors"] == [expected_ancestors], url


@pytest.mark.django_db
def test_no_page_has_inline_scripts_or_event_handlers(crawl):
    for url, response in crawl:
        found = inline_code(response.content.decode())
        assert found.scripts == [], url
        assert found.handlers == [], url


@pytest.mark.django_db
def test_our_pages_have_no_inline_styles_either(crawl):
    # The policy's style-src is 'self' only (the admin's and the browsable API's pages included:
    # the browsable API's templates are overridden where DRF's had inline styles).
    for url, response in crawl:
        assert inline_code(response.content.decode()).styles == [], url


def test_no_template_has_inline_scripts_event_handlers_or_styles():
    # Also the templates the crawl does not reach (error states, emails' HTML parts).
    problems = []
    for base in ("studyplatform", "surveys", "analysis"):
        for template in (ROOT / base).rglob("templates/**/*.html"):
            text = template.read_text()
            for match in re.finditer(r"<script\b([^>]*)>", text):
                attributes = match.group(1)
                if "src=" not in attributes and 'type="application/json"' not in attributes:
                    problems.append(f"{template}: inline <script>")
            if re.search(r"\son[a-z]+\s*=", text):
                problems.append(f"{template}: event handler attribute")
            styled = re.search(r"\sstyle\s*=", text) or "<style" in text
            # (the consent copy and the analysis report are self-contained documents whose one
            # <style> is allowed by hash: core.csp.set_self_contained_policy)
            if styled and template.name not in ("consent_copy.html", "report.html"):
                problems.append(f"{template}: inline style")
    assert problems == []


@pytest.mark.django_db
def test_the_consent_copy_is_styled_by_hash_and_runs_nothing(client, recruiting_study, enroll):
    participant = enroll(recruiting_study)
    participant_login(client, participant)
    response = client.get("/p/consent/")
    assert response.status_code == 200
    directives = csp_directives(response)
    assert directives["script-src"] == ["'none'"]
    assert directives["default-src"] == ["'none'"]
    # exactly the copy's own <style> block is allowed, by its hash
    from studyplatform.core.csp import style_hash

    css = re.search(r"<style>(.*?)</style>", response.content.decode(), re.S).group(1)
    assert directives["style-src"] == [style_hash(css)]


@pytest.mark.django_db
def test_the_analysis_report_is_served_with_its_own_policy(api_as, owner, study):
    # given: a finished run whose report was rendered by the report generator
    from analysis.models import AnalysisRun
    from analysis.report import CSS, render_report
    from studyplatform.core.csp import style_hash

    html = render_report({}, {}, {"title": "Report", "study": study.slug})
    run = AnalysisRun.objects.create(
        study=study,
        status=AnalysisRun.Status.DONE,
        protocol_version=study.current_version,
        report_html=html,
        created_by=owner,
    )
    # when: the researcher opens it
    response = api_as(owner).get(f"/api/studies/{study.slug}/analysis-runs/{run.id}/report/")
    # then: its inline stylesheet (by hash) and data: figures work, scripts do not
    assert response.status_code == 200
    directives = csp_directives(response)
    assert directives["style-src"] == [style_hash(CSS)]
    assert directives["img-src"] == ["data:"]
    assert directives["script-src"] == ["'none'"]
    assert inline_code(html).scripts == [] and inline_code(html).handlers == []


# --- API docs without a CDN ----------------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


@pytest.mark.django_db
def test_the_api_docs_load_only_same_origin_assets_that_exist(client):
    # when: the docs page is opened
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assets = _Assets()
    assets.feed(response.content.decode())
    # then: every asset is on this origin: static files that exist, and the init script
    assert assets.urls, "the page loads no assets"
    static_files = [u for u in assets.urls if u.startswith("/static/")]
    scripts = [u for u in assets.urls if u.startswith("/api/docs/")]
    assert sorted(static_files + scripts) == sorted(assets.urls), assets.urls
    assert any(u.endswith("swagger-ui-bundle.js") for u in static_files)
    for url in static_files:
        assert finders.find(url.removeprefix("/static/")), url
    assert len(scripts) == 1
    script = client.get(scripts[0])
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle(" in script.content
    assert inline_code(response.content.decode()).scripts == []


def test_event_streams_carry_no_policy_and_documents_still_do(rf):
    # given: the policy middleware around a view answering an event stream, and one answering
    # an HTML page
    from django.http import HttpResponse

    from studyplatform.core.middleware import ContentSecurityPolicyMiddleware
    from studyplatform.core.sse import EventStreamResponse

    async def frames():
        yield "event: done\ndata: {}\n\n"

    stream = ContentSecurityPolicyMiddleware(lambda request: EventStreamResponse(frames()))
    page = ContentSecurityPolicyMiddleware(lambda request: HttpResponse("<p>hi</p>"))
    # when
    streamed = stream(rf.post("/p/chat/c/1/reply/"))
    rendered = page(rf.get("/p/"))
    # then: a stream is never rendered, so it goes without; a document keeps its policy
    assert "Content-Security-Policy" not in streamed
    assert "default-src" in csp_directives(rendered)
