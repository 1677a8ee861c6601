"""Issue 12, critical row: model endpoints are platform configuration, not protocol content.

The attack: a stranger signs up as a researcher, creates a study whose arm has
`base_url: http://<their host>/v1` and `api_key_env: SECRET_KEY`, presses "Test models", and their
server receives `Authorization: Bearer <the secret>`. The capture server below is a real HTTP
server on loopback that records every request it receives; the tests assert it receives none.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client
from django.urls import reverse

from studyplatform.chat import services as chat_services
from studyplatform.chat.models import Message
from studyplatform.chat.providers import ProviderConfig, ProviderError, get_provider
from studyplatform.core.model_endpoints import endpoint_get
from studyplatform.core.models import AuditEvent, ModelEndpoint
from studyplatform.studies.models import Arm, Study
from studyplatform.studies.protocol import to_yaml
from studyplatform.studies.services import (
    protocol_version_create,
    study_create_from_protocol,
)
from tests.chat.conftest import run_reply
from tests.factories import launch_study
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.django_db

PLATFORM_SECRET = "the-platform-signing-key-that-must-never-leave-the-server"


class CaptureServer:
    """A tiny threaded HTTP server on loopback that records every request it receives and
    answers like an OpenAI-compatible server, so a request that does arrive 'succeeds'."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                capture.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length).decode("utf-8", "replace"),
                    }
                )
                body = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "m",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "ok"},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _record

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> CaptureServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture_server():
    with CaptureServer() as server:
        yield server


@pytest.fixture
def secret_in_environment(monkeypatch):
    """Production runs with the platform's secrets in its environment."""
    monkeypatch.setenv("SECRET_KEY", PLATFORM_SECRET)


@pytest.fixture
def stranger(client) -> Client:
    """Anyone on the internet, freshly signed up as a researcher."""
    response = client.post(
        "/accounts/signup/",
        {
            "username": "mallory",
            "email": "mallory@example.org",
            "password1": "a long passphrase 42",
            "password2": "a long passphrase 42",
        },
    )
    assert response.status_code == 302
    # ...and confirmed the address they own (sign-up is open; a stranger can do all of this)
    link = re.search(r"http\S+(/accounts/verify-email/\S+/)", mail.outbox[-1].body).group(1)
    client.post(link)
    client.force_login(get_user_model().objects.get(username="mallory"))
    return client


def _pointing_at(doc: dict, url: str, slug: str) -> dict:
    doc["study"]["slug"] = slug
    for arm in doc["arms"]:
        arm["model"] = {
            "provider": "openai",
            "name": "gpt-4o-mini",
            "base_url": url,
            "api_key_env": "SECRET_KEY",
        }
    return doc


def _press_test_models(client: Client, slug: str) -> None:
    client.post(reverse("console:launch_test_models", args=[slug]))


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# --- (a) the exact attack ----------------------------------------------------------------------


def test_a_stranger_cannot_send_the_platform_secret_to_their_server_through_the_console(
    stranger, capture_server, secret_in_environment, rct_doc
):
    # given: a protocol whose arms point at the stranger's server with the platform's secret
    text = to_yaml(_pointing_at(rct_doc, capture_server.base_url, "exfil"))
    # when: they upload it as a new study, then press Test models
    response = stranger.post(
        reverse("console:study_new"),
        {"source": "upload", "file": SimpleUploadedFile("p.yaml", text.encode())},
    )
    _press_test_models(stranger, "exfil")
    # then: the study is refused with errors that say what to write instead, at their lines
    html = response.content.decode()
    assert response.status_code == 400
    assert (
        "<code>arms[0].model.base_url</code>: a protocol cannot name a server address: model "
        "servers are registered by the platform admin; remove base_url and write endpoint: "
        "&lt;a registered endpoint&gt; (registered endpoints: openai, simulated) "
        f"(line {_line_of(text, 'base_url: http')})"
    ) in html
    assert "<code>arms[0].model.api_key_env</code>: a protocol cannot choose which key" in html
    assert not Study.objects.filter(slug="exfil").exists()
    # and the stranger's server never heard from the platform
    assert capture_server.requests == []


def test_a_stranger_cannot_send_the_platform_secret_to_their_server_through_the_api(
    stranger, capture_server, secret_in_environment, rct_doc
):
    # given: the same protocol, sent to the API
    doc = _pointing_at(rct_doc, capture_server.base_url, "exfil-api")
    # when: they create the study through the API (as YAML and as JSON), then press Test models
    as_yaml = stranger.post(
        "/api/studies/", {"yaml": to_yaml(doc)}, content_type="application/json"
    )
    as_json = stranger.post("/api/studies/", {"protocol": doc}, content_type="application/json")
    _press_test_models(stranger, "exfil-api")
    # then: both are refused (400) naming the fields, and nothing is created
    for response in (as_yaml, as_json):
        assert response.status_code == 400
        paths = {e["path"] for e in response.json()["errors"]}
        assert {"arms[0].model.base_url", "arms[0].model.api_key_env"} <= paths
    assert not Study.objects.filter(slug="exfil-api").exists()
    assert capture_server.requests == []


def test_validating_a_protocol_with_a_url_is_refused_and_calls_nothing(
    stranger, capture_server, rct_doc
):
    doc = _pointing_at(rct_doc, capture_server.base_url, "just-checking")
    response = stranger.post(
        "/api/protocol/validate/", {"protocol": doc}, content_type="application/json"
    )
    assert response.json()["valid"] is False
    assert capture_server.requests == []


def test_a_protocol_must_name_a_registered_endpoint_and_an_allowed_model(stranger, rct_doc):
    rct_doc["study"]["slug"] = "unregistered"
    rct_doc["arms"][0]["model"]["endpoint"] = "my-server"
    rct_doc["arms"][1]["model"]["name"] = "gpt-5-unlisted"
    response = stranger.post(
        "/api/studies/", {"protocol": rct_doc}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "path": "arms[0].model.endpoint",
            "message": "no registered endpoint called 'my-server'; registered endpoints: openai, "
            "simulated",
            "line": None,
        },
        {
            "path": "arms[1].model.name",
            "message": "'gpt-5-unlisted' is not an allowed model on endpoint openai (allowed: "
            "gpt-4o-2024-05-13, gpt-4.1-2025-04-14, gpt-4o-2024-08-06)",
            "line": None,
        },
    ]


# --- (b) a designer cannot redirect a live study ------------------------------------------------


@pytest.fixture
def live_study(owner, rct_doc, member_of):
    for arm in rct_doc["arms"]:
        arm["model"] = {"endpoint": "simulated", "name": f"pilot-{arm['key']}"}
    study = study_create_from_protocol(doc=rct_doc, author=owner)
    study = launch_study(study, owner)
    return study


def test_a_designer_cannot_redirect_a_live_studys_arms_through_the_console(
    live_study, member_of, capture_server, secret_in_environment
):
    designer = Client()
    designer.force_login(member_of(live_study, "designer"))
    # when: the designer saves YAML whose first arm points at their server
    text = to_yaml(live_study.protocol).replace(
        "endpoint: simulated",
        f"endpoint: simulated\n    base_url: {capture_server.base_url}\n"
        "    api_key_env: SECRET_KEY",
        1,
    )
    yaml_response = designer.post(
        reverse("console:design_yaml", args=[live_study.slug]),
        {"yaml-yaml": text, "yaml-change_note": "faster model"},
    )
    # and: the arms form is posted with URL fields added by hand
    form_response = designer.post(
        reverse("console:design_section", args=[live_study.slug, "arms"]),
        {
            "arms-TOTAL_FORMS": "1",
            "arms-INITIAL_FORMS": "0",
            "arms-0-key": "legacy",
            "arms-0-weight": "1",
            "arms-0-endpoint": "my-server",
            "arms-0-model_name": "gpt-4o-mini",
            "arms-0-base_url": capture_server.base_url,
            "arms-0-api_key_env": "SECRET_KEY",
            "arms-change_note": "faster model",
        },
    )
    # then: both are refused, no version is created and the arms are unchanged
    assert yaml_response.status_code == 400
    assert "arms[0].model.base_url" in yaml_response.content.decode()
    assert form_response.status_code == 400
    assert "Select a valid choice. my-server is not one of the available choices." in (
        form_response.content.decode()
    )
    assert live_study.versions.count() == 1
    assert set(live_study.arms.values_list("endpoint", flat=True)) == {"simulated"}
    _press_test_models(designer, live_study.slug)
    assert capture_server.requests == []


def test_a_designer_cannot_redirect_a_live_studys_arms_through_the_api(
    live_study, member_of, api_as, capture_server
):
    client = api_as(member_of(live_study, "designer"))
    doc = live_study.protocol
    doc["arms"][0]["model"]["base_url"] = capture_server.base_url
    response = client.put(
        f"/api/studies/{live_study.slug}/protocol/",
        {"protocol": doc, "change_note": "faster model"},
        format="json",
    )
    assert response.status_code == 400
    assert [e["path"] for e in response.json()["errors"]] == ["arms[0].model.base_url"]
    assert live_study.versions.count() == 1
    arms = client.get(f"/api/studies/{live_study.slug}/arms/").json()
    assert all("base_url" not in arm and arm["endpoint"] == "simulated" for arm in arms)
    assert capture_server.requests == []


# --- (c) failures shown to researchers say nothing about the network ----------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_failed_model_test_names_the_endpoint_only_and_the_audit_log_keeps_the_detail(
    owner, rct_doc, register_endpoint
):
    # given: an endpoint registered at a loopback port nobody listens on
    port = _closed_port()
    register_endpoint("lab-gpu", base_url=f"http://127.0.0.1:{port}/v1", models=["llama"])
    for arm in rct_doc["arms"]:
        arm["model"] = {"endpoint": "lab-gpu", "name": "llama"}
    study = study_create_from_protocol(doc=rct_doc, author=owner)
    client = Client()
    client.force_login(owner)
    # when: Test models is pressed
    response = client.post(reverse("console:launch_test_models", args=[study.slug]), follow=True)
    # then: the page says which endpoint failed, generically
    html = response.content.decode()
    assert "Arm legacy: endpoint lab-gpu did not answer" in html
    checklist = re.findall(r'<tr data-check="model_check:legacy".*?</tr>', html, re.S)[0]
    assert "The last test failed: endpoint lab-gpu did not answer" in checklist
    for internal in ("127.0.0.1", str(port), "onnect", "Errno", "refused", "http://"):
        assert internal not in html
    # and: the audit log holds the detail for the platform admin
    event = AuditEvent.objects.filter(action="launch.model_check", data__arm="legacy").get()
    assert event.data["ok"] is False
    assert event.data["error"] == "endpoint lab-gpu did not answer"
    assert "onnect" in event.data["detail"]


def test_an_http_error_from_the_endpoint_shows_only_its_status(owner, rct_doc, register_endpoint):
    with FakeUpstream() as upstream:
        register_endpoint("lab", base_url=upstream.base_url, models=["gpt-test"])
        for arm in rct_doc["arms"]:
            arm["model"] = {"endpoint": "lab", "name": "gpt-test"}
        study = study_create_from_protocol(doc=rct_doc, author=owner)
        upstream.script(count=2, fault="401")
        client = Client()
        client.force_login(owner)
        html = client.post(
            reverse("console:launch_test_models", args=[study.slug]), follow=True
        ).content.decode()
    assert "Arm legacy: endpoint lab refused the test: HTTP 401" in html
    assert upstream.base_url.split("//")[1].split("/")[0] not in html


# --- (d) an endpoint's key can never be a platform secret ---------------------------------------


@pytest.mark.parametrize(
    "secret", ["SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DATABASE_URL", "EMAIL_URL", "REDIS_URL"]
)
def test_an_admin_cannot_register_an_endpoint_whose_key_is_a_platform_secret(secret):
    endpoint = ModelEndpoint(
        name="exfil",
        kind="openai",
        base_url="https://models.example.org/v1",
        api_key_env=secret,
        allowed_models=["m"],
    )
    with pytest.raises(ValidationError) as info:
        endpoint.full_clean()
    assert info.value.message_dict["api_key_env"] == [
        f"{secret} holds a platform secret and can never be sent to a model endpoint"
    ]


def test_the_admin_form_refuses_a_secret_key_variable_and_saves_nothing():
    admin = get_user_model().objects.create_superuser("root", "root@example.org", "pw-root-1234")
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/admin/core/modelendpoint/add/",
        {
            "name": "exfil",
            "kind": "openai",
            "base_url": "https://models.example.org/v1",
            "api_key_env": "SECRET_KEY",
            "requires_api_key": "on",
            "allowed_models": "m",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "SECRET_KEY holds a platform secret" in response.content.decode()
    assert not ModelEndpoint.objects.exists()


def test_an_endpoint_declared_in_the_environment_with_a_secret_key_stops_the_checks(settings):
    settings.MODEL_ENDPOINTS = {
        **settings.MODEL_ENDPOINTS,
        "exfil": {
            "kind": "openai",
            "base_url": "https://models.example.org/v1",
            "api_key_env": "FIELD_ENCRYPTION_KEY",
            "models": ["m"],
        },
    }
    with pytest.raises(SystemCheckError, match="FIELD_ENCRYPTION_KEY holds a platform secret"):
        call_command("check")
    # and if the server runs anyway, the endpoint does not exist
    assert endpoint_get("exfil") is None


def test_a_secret_key_variable_is_refused_at_call_time_too(capture_server, secret_in_environment):
    # given: an endpoint row written straight to the database, past every form
    ModelEndpoint.objects.create(
        name="exfil",
        kind="openai",
        base_url=capture_server.base_url,
        api_key_env="SECRET_KEY",
        requires_api_key=True,
        allowed_models=["m"],
    )
    # then: the registry does not resolve it
    assert endpoint_get("exfil") is None
    # and: even a provider configured by hand refuses to send the variable
    provider = get_provider(
        "openai", ProviderConfig(base_url=capture_server.base_url, api_key_env="SECRET_KEY")
    )

    async def check():
        try:
            return await provider.check("m")
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError, match="refusing to send SECRET_KEY"):
        async_to_sync(check)()
    assert capture_server.requests == []


# --- (e) chat replies go to the registered endpoint ----------------------------------------------


def test_chat_replies_go_to_the_url_registered_for_the_endpoint_at_call_time(
    owner, rct_doc, register_endpoint, enroll
):
    with FakeUpstream() as first, FakeUpstream() as second:
        # given: a recruiting study whose arms use the endpoint `lab`, registered at `first`
        register_endpoint("lab", base_url=first.base_url, models=["gpt-test"])
        for arm in rct_doc["arms"]:
            arm["model"] = {"endpoint": "lab", "name": "gpt-test"}
        study = study_create_from_protocol(doc=rct_doc, author=owner)
        study = launch_study(study, owner)
        participant = enroll(study)
        conversation = chat_services.conversation_create(participant=participant)

        def reply_to(text: str) -> Message:
            user = chat_services.message_send(
                participant=participant, conversation=conversation, text=text
            ).message
            run_reply(user.pk)
            return Message.objects.filter(role="assistant").latest("id")

        # when: a participant chats, the reply comes from `first`
        assert reply_to("[[reply: from first]] hi").content == "from first"
        assert [r["model"] for r in first.requests] == ["gpt-test"]
        # when: the operator moves `lab` to `second`, the next reply comes from there
        register_endpoint("lab", base_url=second.base_url, models=["gpt-test"])
        assert reply_to("[[reply: from second]] again").content == "from second"
        assert len(first.requests) == 1 and len(second.requests) == 1
        # when: the operator withdraws the model, nothing goes out and the reply is an error
        register_endpoint("lab", base_url=second.base_url, models=["another-model"])
        refused = reply_to("[[reply: never]] and again")
        assert refused.status == "error"
        assert len(first.requests) == 1 and len(second.requests) == 1


def test_arms_record_the_endpoint_and_never_a_url(owner, rct_doc):
    study = study_create_from_protocol(doc=rct_doc, author=owner)
    arm = Arm.objects.get(study=study, key="legacy")
    assert (arm.endpoint, arm.provider, arm.model_name) == ("openai", "openai", "gpt-4o-2024-05-13")
    assert not any(f.name in ("base_url", "api_key_env") for f in Arm._meta.get_fields())


def test_a_version_saved_before_endpoints_still_loads_and_is_edited_in_the_new_form(
    owner, study, settings
):
    from studyplatform.studies.models import ProtocolVersion
    from studyplatform.studies.selectors import protocol_for_editing

    # given: a stored version written before endpoints (immutable: it keeps its old fields)
    old = study.protocol
    for arm in old["arms"]:
        arm["model"] = {
            "provider": "openai",
            "name": arm["model"]["name"],
            "api_key_env": "OPENAI_API_KEY",
        }
    version = ProtocolVersion.objects.create(
        study=study, number=2, content=old, content_hash="legacy", status_at_creation="draft"
    )
    Study.objects.filter(pk=study.pk).update(current_version=version)
    study.refresh_from_db()
    # when: the designer page and the API's protocol download load it
    client = Client()
    client.force_login(owner)
    page = client.get(reverse("console:design", args=[study.slug]))
    download = client.get(f"/api/studies/{study.slug}/protocol/")
    # then: both work, and show the arms on their migrated endpoint, ready to save
    assert page.status_code == 200 and download.status_code == 200
    assert "endpoint: openai" in download.json()["yaml"]
    assert "api_key_env" not in download.json()["yaml"]
    edited = protocol_for_editing(study)
    edited["study"]["title"] = "Edited after the upgrade"
    new_version, created = protocol_version_create(study=study, doc=edited, author=owner)
    assert created and new_version.content["arms"][0]["model"]["endpoint"] == "openai"
    # and the old version is untouched
    version.refresh_from_db()
    assert version.content["arms"][0]["model"]["api_key_env"] == "OPENAI_API_KEY"


def test_researchers_can_list_endpoint_names_and_models_but_never_urls_or_key_variables(
    stranger, register_endpoint
):
    register_endpoint("lab-gpu", base_url="http://10.1.2.3:8000/v1", models=["llama"])
    response = stranger.get("/api/model-endpoints/")
    assert response.status_code == 200
    assert response.json() == [
        {"name": "lab-gpu", "kind": "openai", "models": ["llama"], "any_model_name": False},
        {
            "name": "openai",
            "kind": "openai",
            "models": ["gpt-4o-2024-05-13", "gpt-4.1-2025-04-14", "gpt-4o-2024-08-06"],
            "any_model_name": False,
        },
        {"name": "simulated", "kind": "simulated", "models": [], "any_model_name": True},
    ]
    assert "10.1.2.3" not in response.content.decode()
    assert "OPENAI_API_KEY" not in response.content.decode()
