"""Shared fixtures: researchers, studies built through the real services, API clients."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from studyplatform.studies.protocol import parse_protocol_text
from studyplatform.studies.services import membership_add, study_create_from_protocol
from tests.factories import launch_study

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _locmem_email(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # Django's default PBKDF2 (over a million iterations) costs a good fraction of a second per
    # password on these machines, and nearly every test creates an account. What the tests check
    # (who may sign in, lockouts, resets) does not depend on the hash's cost.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_redis():
    """Each test starts with an empty Redis: counters (rate limits) must not leak across tests,
    where database ids are reused after rollback."""
    import redis
    from django.conf import settings as django_settings

    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()


@pytest.fixture(autouse=True)
def _fresh_protocol_cache():
    """The engine caches protocol versions by id (rows are immutable, ids never reused in a
    real database); tests roll back and reuse ids, so start each test with an empty cache."""
    from surveys.engine import _entries

    _entries.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_send_cache():
    """Chat sends keep conversation rows per process (chat.send_load.send_cache). A kept row
    can store nothing on rows that changed (its fingerprint is checked), but a test that counts
    a send's queries or steps should not depend on the sends of the tests before it."""
    from studyplatform.chat.send_load import send_cache
    from studyplatform.chat.services import history_texts

    send_cache.clear()
    history_texts().clear()


# The examples' arms use models on the `openai` endpoint. Tests register it as an operator would,
# but at a closed loopback port: whatever a test does, no model call leaves this machine.
EXAMPLE_MODELS = ["gpt-4o-2024-05-13", "gpt-4.1-2025-04-14", "gpt-4o-2024-08-06"]
CLOSED_LOOPBACK_URL = "http://127.0.0.1:9/v1"


@pytest.fixture(autouse=True)
def _model_endpoints(settings):
    settings.MODEL_ENDPOINTS = {
        "openai": {
            "kind": "openai",
            "base_url": CLOSED_LOOPBACK_URL,
            "api_key_env": "OPENAI_API_KEY",
            "models": EXAMPLE_MODELS,
        }
    }
    # The developer's own OPENAI_*/ANTHROPIC_* variables must not add endpoints to tests.
    settings.OPENAI_BASE_URL = settings.OPENAI_API_KEY = ""
    settings.ANTHROPIC_CONFIGURED = False


@pytest.fixture
def register_endpoint(settings):
    """Register a model endpoint as the platform operator does (MODEL_ENDPOINTS)."""

    def register(
        name: str,
        *,
        base_url: str,
        models: list[str],
        kind: str = "openai",
        api_key_env: str = "",
        requires_api_key: bool = False,
    ) -> None:
        spec = {"kind": kind, "base_url": base_url, "models": models}
        spec["requires_api_key"] = requires_api_key
        if api_key_env:
            spec["api_key_env"] = api_key_env
        settings.MODEL_ENDPOINTS = {**settings.MODEL_ENDPOINTS, name: spec}

    return register


def example_doc(name: str = "companion-rct") -> dict:
    return copy.deepcopy(parse_protocol_text((EXAMPLES / f"{name}.yaml").read_text()))


@pytest.fixture
def rct_doc() -> dict:
    return example_doc("companion-rct")


@pytest.fixture
def make_user(django_user_model):
    """A researcher account; verified (able to hold study roles) unless verified=False.

    The verification row is written directly, not through email_mark_verified, so fixtures add
    no audit events to the tests that count them."""
    from django.utils import timezone

    from studyplatform.accounts.models import EmailVerification

    def make(username: str, *, verified: bool = True, **extra):
        extra.setdefault("email", f"{username}@example.org")
        user = django_user_model.objects.create_user(
            username=username, password="pw-" + username, **extra
        )
        if verified:
            EmailVerification.objects.create(
                user=user, email=user.email, method="command", verified_at=timezone.now()
            )
        return user

    return make


@pytest.fixture
def owner(make_user):
    return make_user("olivia")


@pytest.fixture
def study(owner, rct_doc):
    return study_create_from_protocol(doc=rct_doc, author=owner)


@pytest.fixture
def member_of(make_user):
    """Create a user holding `role` in `study`."""

    def make(study, role: str, username: str | None = None):
        user = make_user(username or f"{role}-{study.slug}")
        membership_add(study=study, user=user, role=role, actor=None)
        return user

    return make


@pytest.fixture
def api_as():
    def client_for(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return client_for


@pytest.fixture
def recruiting_study(study, owner):
    return launch_study(study, owner)


ELIGIBLE = {"age": 30, "uses_chatbots": True, "gender": "woman"}
ALL_CONSENT = {"agree": True, "adult": True, "share_chats": True, "import_history": True}


@pytest.fixture
def enroll():
    """Enroll through the real service; keyword overrides for any argument."""
    from studyplatform.participants.services import JoinContext, participant_enroll

    counter = {"n": 0}

    def do(study, **overrides):
        counter["n"] += 1
        kwargs = {
            "study": study,
            "answers": dict(ELIGIBLE),
            "language": "en",
            "timezone_name": "America/Sao_Paulo",
            "choices": dict(ALL_CONSENT),
            "signature_name": "Ana Souza",
            "email": f"person{counter['n']}@example.org",
            "join": JoinContext(),
        }
        kwargs.update(overrides)
        return participant_enroll(**kwargs)

    return do


@pytest.fixture
def throwaway_redis(settings):
    """A redis-server of this test's own, used by chat and the cache, that the test may kill
    and restart: the shared test Redis is never touched."""
    from studyplatform.core.embedded_redis import start_embedded_redis, stop_embedded_redis

    url, proc = start_embedded_redis()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    settings.REDIS_URL = url
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "LOCATION": url},
    }
    server = {"proc": proc, "port": port, "url": url}

    def kill():
        server["proc"].kill()
        server["proc"].wait(timeout=10)

    def restart():
        _, server["proc"] = start_embedded_redis(port=port)

    server["kill"], server["restart"] = kill, restart
    yield server
    stop_embedded_redis(server["proc"])
