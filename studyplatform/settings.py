"""All settings, every one read from the environment in this module (django-environ).

DEBUG defaults to false: a deployment that forgets it gets production behaviour (it refuses to
start without a real SECRET_KEY and FIELD_ENCRYPTION_KEY, HTTPS redirect, HSTS, secure cookies),
never the public development keys. Everything that runs in development sets DEBUG=true for
itself (`make run`, the test plugin, CI); with it, SQLite under var/, an embedded Redis started
by the launcher or the test plugin and the simulated model provider work with nothing else set.
"""

from __future__ import annotations

import json
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    """Parse a boolean strictly: a typo such as DEBUG=Flase must not silently mean anything."""
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (got {raw!r}).")


# Unset means production: forgetting DEBUG must never mean running with the public development keys.
DEBUG = env_bool("DEBUG", default=False)

# Development-only fallbacks. They are public (they are in the repository), which is exactly why
# production refuses to start with them.
_DEV_SECRET_KEY = "dev-insecure-secret-key-change-me-for-anything-real"  # noqa: S105
_DEV_FIELD_KEY = "Kj0m6hX1U8o7h8a0lYbqkpO0mUoZlY5nqv7Wm1oQp2w="

SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY)
# Comma-separated Fernet keys, newest first: MultiFernet decrypts with any, encrypts with the first.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEY", default=[_DEV_FIELD_KEY])


def _check_production_secrets() -> None:
    problems = []
    if SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 32:
        problems.append("SECRET_KEY must be set to a random string of at least 32 characters")
    if not FIELD_ENCRYPTION_KEYS or _DEV_FIELD_KEY in FIELD_ENCRYPTION_KEYS:
        problems.append(
            "FIELD_ENCRYPTION_KEY must be set to a Fernet key (generate one with: python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
        )
    if problems:
        hint = ""
        if not env.str("DEBUG", default="").strip():
            hint = " (DEBUG is not set, which means production; set DEBUG=true for development)"
        raise ImproperlyConfigured(
            "Refusing to start with DEBUG=False: " + "; ".join(problems) + "." + hint
        )


if not DEBUG:
    _check_production_secrets()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Reverse proxies (IPs or CIDR networks) whose X-Forwarded-For is believed for client addresses
# (rate limits, login throttling). Empty: the socket peer is the client and the header is ignored.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI's files, served from our own static files (no CDN: works offline and under CSP).
    "drf_spectacular_sidecar",
    "studyplatform.core",
    "studyplatform.studies",
    "studyplatform.participants",
    "studyplatform.chat",
    "studyplatform.safety",
    "studyplatform.classifiers",
    "studyplatform.exports",
    "studyplatform.console",
    "surveys",
    "analysis",
    "studyplatform.compliance",
]

MIDDLEWARE = [
    # Drops X-Forwarded-Proto unless it came from TRUSTED_PROXIES (before the HTTPS redirect).
    "studyplatform.core.middleware.ProxySSLHeaderFromTrustedProxiesOnly",
    "django.middleware.security.SecurityMiddleware",
    "studyplatform.core.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "studyplatform.urls"
WSGI_APPLICATION = "studyplatform.wsgi.application"
ASGI_APPLICATION = "studyplatform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "studyplatform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'studyplatform.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets streaming writes, workers and readers share the file; IMMEDIATE transactions take
    # the write lock up front so concurrent writers wait (busy timeout) instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DB_POOL", default=True
):
    # ASGI runs each request's database work in a fresh thread; without a pool every request
    # would open a new connection (~15 ms). psycopg's pool keeps them (CONN_MAX_AGE must be 0).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DB_POOL_MAX_SIZE", default=20),
        "timeout": 10,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # SQLite: a request's thread is kept for later requests (core/sse.py RequestThreads), and
    # so is its connection, instead of opening one (and running the PRAGMAs above) per request.
    DATABASES["default"].setdefault(
        "CONN_MAX_AGE",
        env.int(
            "CONN_MAX_AGE",
            default=300 if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else 0,
        ),
    )
# The chat send's statements as prepared statements on PostgreSQL (core/prepared.py); off
# behind a transaction-pooling proxy that cannot keep them.
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DB_PREPARED_STATEMENTS:
    # psycopg prepares nothing while this is None (Django's default), and its client-binding
    # cursors, which every other query uses, never prepare whatever it is; 0 prepares a
    # server-binding cursor's statement at its first execution.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 0)
    # PostgreSQL plans a prepared statement's first five executions on each connection for
    # their parameter values before it settles on one generic plan: five plannings of ~1.2 ms
    # (the storing statement's joins) per statement and pooled connection, paid by sends
    # whenever the pool opens one. The send's statements look rows up by key, so the generic
    # plan is the plan: planned once per connection. Only prepared statements are affected
    # (every other query is planned per execution anyway). It travels as the connection's
    # `options` startup parameter, which a proxy may refuse (PgBouncer 1.20+ unless listed in
    # track_extra_parameters): DB_GENERIC_PLANS=false leaves PostgreSQL's default.
    DB_GENERIC_PLANS = env_bool("DB_GENERIC_PLANS", default=True)
    _options = DATABASES["default"]["OPTIONS"].get("options", "")
    if DB_GENERIC_PLANS and "plan_cache_mode" not in _options:
        DATABASES["default"]["OPTIONS"]["options"] = (
            f"{_options} -c plan_cache_mode=force_generic_plan".strip()
        )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="sp"),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# URL names, not paths: Django reverses them, so the routes are defined in urls.py only.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:study_list"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("pt-br", _("Brazilian Portuguese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
# The embedded default serves static files from the ASGI app; a deployment serves STATIC_ROOT
# (after `manage.py collectstatic`) from its reverse proxy and sets SERVE_STATIC=false.
SERVE_STATIC = env_bool("SERVE_STATIC", default=DEBUG)
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# --- Transport security (HTTPS, HSTS, TLS proxy) -----------------------------------------------
# Production (DEBUG=false) defaults to HTTPS only; development (plain http on loopback) to none
# of it. Each can be overridden from the environment.
# Sessions stay in the database and are read from Redis (core/sessions.py): every request loads
# its session, and a Redis GET costs a fraction of the SELECT (issue 19's chat send).
SESSION_ENGINE = "studyplatform.core.sessions"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers usually probe the backend over plain HTTP; /healthz reveals only reachability,
# so it answers there instead of redirecting (a redirect would read as "unhealthy").
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# One year, the value browsers' preload lists require; 0 turns HSTS off. Start lower (e.g. 300)
# when first moving a host to HTTPS: browsers remember the header for the whole period.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
# Preloading is a commitment the operator makes by submitting the domain to the browsers' lists
# (hard to undo), so it is opt-in; Django's advice to set it (security.W021) is silenced for that
# reason, below in SILENCED_SYSTEM_CHECKS.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
# Behind a TLS-terminating reverse proxy the socket is plain HTTP: believe the proxy's
# X-Forwarded-Proto so HTTPS is recognised (no redirect loop, https absolute links, secure CSRF
# checks). The proxy must overwrite that header; with TRUSTED_PROXIES set it is believed only
# from those addresses (studyplatform.core.middleware), otherwise from any peer.
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- Content-Security-Policy (django-csp 4) ----------------------------------------------------
# No inline scripts and no inline styles anywhere: page scripts and styles are static files, data
# for scripts travels in data- attributes or <script type="application/json">. The few responses
# that must differ (the self-contained analysis report, the downloadable consent copy, the console's
# same-origin preview frames) adjust this policy per view with csp.decorators.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # data: for the PNG figures of analysis reports and Swagger UI's inline SVG icons.
        "img-src": ["'self'", "data:"],
        # Chat sends and streams with fetch() to the same origin.
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# EMAIL_URL, e.g. smtp+tls://user:password@mail.example.org:587 (console output by default).
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "")
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS", False))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL", False))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Study Platform <noreply@localhost>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "studyplatform.core.schema.PlatformAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
# Query strings holding NUL (PostgreSQL cannot store or compare it) are a 400 for every view.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.common.CommonMiddleware"),
    "studyplatform.core.middleware.RefuseNulQueryMiddleware",
)
# JSON bodies go through the bounded parser (nesting, invalid Unicode, huge numbers -> 400).
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = [
    "studyplatform.core.parsers.BoundedJSONParser",
    "rest_framework.parsers.FormParser",
    "rest_framework.parsers.MultiPartParser",
]
SPECTACULAR_SETTINGS = {
    "TITLE": "Study Platform researcher API",
    "DESCRIPTION": "Studies, arms, protocol versions, consent documents and team membership.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf_spectacular_sidecar's static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # A study's status and the transition target share one choice set: one name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "StudyStatusEnum": "studyplatform.studies.models.Study.Status",
        # Every resource with a lifecycle has a `status`: one named enum each.
        "AnalysisRunStatusEnum": "analysis.models.AnalysisRun.Status",
        "ExportStatusEnum": "studyplatform.exports.models.DatasetExport.Status",
        "SafetyAlertStatusEnum": "studyplatform.safety.models.SafetyAlert.Status",
        "SurveyInvitationStatusEnum": "surveys.models.Invitation.Status",
        "ParticipantStatusEnum": "studyplatform.participants.models.Participant.Status",
        "MessageStatusEnum": "studyplatform.chat.models.Message.Status",
        "MessageRoleEnum": "studyplatform.chat.models.Message.Role",
        "StudyRoleEnum": "studyplatform.studies.api.STUDY_ROLE_CHOICES",
    },
}

# Celery: JSON only, global time limits, named queues (see studyplatform/celery.py and beat.py).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"

# Job leases (studyplatform/core/leases.py): analysis runs, exports and data downloads are held
# by one worker for JOB_LEASE_SECONDS, renewed every third of it while the worker lives; an
# expired lease is taken over by the beat sweep (every minute) or a redelivered task. 5 minutes
# bounds how long a killed worker's job waits; after JOB_MAX_ATTEMPTS claims that all died the
# job is failed with the reason. A pending job nobody picked up is re-sent after
# JOB_PENDING_REDISPATCH_SECONDS (long enough not to duplicate messages queued behind long jobs).
JOB_LEASE_SECONDS = env.int("JOB_LEASE_SECONDS", default=300)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)
JOB_PENDING_REDISPATCH_SECONDS = env.int("JOB_PENDING_REDISPATCH_SECONDS", default=900)
# Fault-injection tests only: seconds to sleep between job steps so a worker can be killed
# mid-job. From the environment alone (never a protocol or request), and ignored in production
# (DEBUG=false) so a stray variable cannot slow a real deployment; 0 = off.
JOB_TEST_STEP_DELAY_SECONDS = (
    env.float("JOB_TEST_STEP_DELAY_SECONDS", default=0.0) if DEBUG else 0.0
)

# /healthz answers 503 when any of these is exceeded (studyplatform/core/health.py). The worker
# heartbeat and beat's ticks come every 30 s (beat.py), so 90 s tolerates two missed ones. The
# default, chat queues carry invitations, emails and safety alerts: 5 minutes of backlog is an
# outage. The analysis and exports queues wait behind long jobs (up to CELERY_TASK_TIME_LIMIT).
HEALTH_WORKER_MAX_AGE_S = env.int("HEALTH_WORKER_MAX_AGE_S", default=90)
HEALTH_BEAT_MAX_AGE_S = env.int("HEALTH_BEAT_MAX_AGE_S", default=90)
HEALTH_QUEUE_MAX_AGE_S = env.int("HEALTH_QUEUE_MAX_AGE_S", default=300)
HEALTH_JOB_QUEUE_MAX_AGE_S = env.int("HEALTH_JOB_QUEUE_MAX_AGE_S", default=1800)

# A chat reply still `streaming` this long after its last checkpoint (saved every 2 s while
# tokens arrive) was abandoned by its process: the stale-reply sweep records it as
# error / internal_interrupted. A live stream checkpoints whenever text arrives and is ended by
# the provider's read timeout after 60 s of silence, so 10 minutes never catches a live reply.
STALE_REPLY_AFTER_S = env.int("STALE_REPLY_AFTER_S", default=600)

# Under ASGI (uvicorn), how many requests of one worker run their middleware and sync view at
# once, admitted in arrival order; one that takes longer than the budget gives its place to
# the next (core/admission.py). Python runs one thread at a time, so more at once only makes
# everyone finish late: 50 chat sends at the same instant were answered at a median ~250 ms
# when all ran interleaved.
REQUEST_ADMISSION_LIMIT = env.int("REQUEST_ADMISSION_LIMIT", default=2)
REQUEST_ADMISSION_BUDGET_MS = env.int("REQUEST_ADMISSION_BUDGET_MS", default=50)
# Idle request threads a worker keeps for its next requests (core/sse.py RequestThreads);
# starting two threads per request was on every chat send's path.
REQUEST_THREADS_KEPT = env.int("REQUEST_THREADS_KEPT", default=64)

# Models. Which model servers the platform may call is platform configuration, never protocol
# content: protocols name a registered endpoint and a model (studyplatform/core/model_endpoints.py,
# README "Model endpoints"). Endpoints come from MODEL_ENDPOINTS (JSON object: name -> {kind,
# base_url, api_key_env, requires_api_key, models}) or MODEL_ENDPOINTS_FILE (a JSON file with the
# same object), from the OPENAI_*/ANTHROPIC_* conveniences below, and from the Django admin.
# API keys are only ever read from the environment at call time, never stored.


def _model_endpoints() -> dict:
    raw = env.str("MODEL_ENDPOINTS", default="").strip()
    path = env.str("MODEL_ENDPOINTS_FILE", default="").strip()
    if raw and path:
        raise ImproperlyConfigured("Set MODEL_ENDPOINTS or MODEL_ENDPOINTS_FILE, not both.")
    source = "MODEL_ENDPOINTS"
    if path:
        source = f"MODEL_ENDPOINTS_FILE ({path})"
        try:
            raw = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ImproperlyConfigured(f"{source} cannot be read: {exc.strerror}.") from None
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{source} is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ImproperlyConfigured(
            f"{source} must be a JSON object mapping endpoint names to their settings."
        )
    return data


MODEL_ENDPOINTS = _model_endpoints()
# The `openai` convenience endpoint exists when either is set; it allows DEMO_MODEL plus
# OPENAI_MODELS (comma-separated). Likewise `anthropic` with ANTHROPIC_MODELS.
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_MODELS = env.list("OPENAI_MODELS", default=[])
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
ANTHROPIC_CONFIGURED = bool(ANTHROPIC_BASE_URL or env.str("ANTHROPIC_API_KEY", default=""))
ANTHROPIC_MODELS = env.list("ANTHROPIC_MODELS", default=[])
DEMO_MODEL = env.str("DEMO_MODEL", default="gpt-4o-mini")
# Environment variables that hold platform secrets, on top of the built-in list (SECRET_KEY,
# FIELD_ENCRYPTION_KEY, DATABASE_URL, EMAIL_URL, REDIS_URL, CELERY_BROKER_URL, ...): no model
# endpoint may name one as its key variable.
PLATFORM_SECRET_ENV_VARS = env.list("PLATFORM_SECRET_ENV_VARS", default=[])
LLM_CONNECT_TIMEOUT_S = env.float("LLM_CONNECT_TIMEOUT_S", default=10.0)
LLM_READ_TIMEOUT_S = env.float("LLM_READ_TIMEOUT_S", default=60.0)
# Voice arms (chat/voice.py): the largest recording a participant may upload (a minute of
# browser opus is ~0.5 MB; WAV ~1-2 MB), and the speech models' timeouts (a transcription or
# a spoken reply takes seconds; past these the participant is told and can retry).
VOICE_MAX_UPLOAD_BYTES = env.int("VOICE_MAX_UPLOAD_BYTES", default=8 * 1024 * 1024)
# Django's ASGI handler spools every request body over FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary
# file before any view runs; a voice recording the participant did not agree to keep must never
# reach the disk, so bodies up to the voice ceiling (plus the multipart framing) stay in memory.
# Larger uploads (ChatGPT exports) still spool as before.
FILE_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, VOICE_MAX_UPLOAD_BYTES + 64 * 1024)
VOICE_CONNECT_TIMEOUT_S = env.float("VOICE_CONNECT_TIMEOUT_S", default=5.0)
VOICE_READ_TIMEOUT_S = env.float("VOICE_READ_TIMEOUT_S", default=30.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Error responses are logged with their path: return and sign-in link secrets are redacted.
    "filters": {"redact_paths": {"()": "studyplatform.core.access_log.RequestLogRedactor"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"filters": ["redact_paths"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# Participants: passwordless sign-in links and long sessions for daily use on a phone.
SIGNIN_LINK_MAX_AGE_S = env.int("SIGNIN_LINK_MAX_AGE_S", default=60 * 60)
# Sign-in emails per address and client per hour, and per address from all clients per hour.
# Over either, no email is sent but the answer is the same (nobody can lock a participant out).
SIGNIN_EMAIL_LIMIT = env.int("SIGNIN_EMAIL_LIMIT", default=5)
SIGNIN_ADDRESS_LIMIT = env.int("SIGNIN_ADDRESS_LIMIT", default=20)
SIGNIN_CLIENT_LIMIT = env.int("SIGNIN_CLIENT_LIMIT", default=30)  # requests per client/hour
# How long after signing in by emailed link or return link a participant may set a password
# without typing the current one.
PARTICIPANT_FRESH_SIGNIN_S = env.int("PARTICIPANT_FRESH_SIGNIN_S", default=15 * 60)
ENROLLMENT_CLIENT_LIMIT = env.int("ENROLLMENT_CLIENT_LIMIT", default=20)  # consents/client/hour
PARTICIPANT_SESSION_AGE_S = env.int("PARTICIPANT_SESSION_AGE_S", default=60 * 60 * 24 * 30)
LLM_FIRST_TOKEN_DEADLINE_S = env.float("LLM_FIRST_TOKEN_DEADLINE_S", default=30.0)
CHAT_IMPORT_MAX_BYTES = env.int("CHAT_IMPORT_MAX_BYTES", default=50 * 1024 * 1024)
# Each web process keeps the conversation texts it decrypted for model requests (by encrypted
# token; chat.services.build_request): at most this many million characters of tokens and
# texts, an entry unused for CHAT_HISTORY_CACHE_IDLE_S dropped. 0 keeps none (every send
# decrypts the whole history again).
CHAT_HISTORY_CACHE_MCHARS = env.int("CHAT_HISTORY_CACHE_MCHARS", default=16)
CHAT_HISTORY_CACHE_IDLE_S = env.int("CHAT_HISTORY_CACHE_IDLE_S", default=15 * 60)
if CHAT_HISTORY_CACHE_MCHARS < 0 or CHAT_HISTORY_CACHE_IDLE_S < 0:
    raise ImproperlyConfigured(
        "CHAT_HISTORY_CACHE_MCHARS and CHAT_HISTORY_CACHE_IDLE_S must be 0 or more."
    )
# Optional moderation for chat safety (protocol safety.detector.moderation: true): a registered
# OpenAI-compatible endpoint, by name.
if env.str("MODERATION_BASE_URL", default="") or env.str("MODERATION_API_KEY_ENV", default=""):
    raise ImproperlyConfigured(
        "MODERATION_BASE_URL and MODERATION_API_KEY_ENV were replaced by MODERATION_ENDPOINT: "
        "register the moderation server as a model endpoint (MODEL_ENDPOINTS) and name it there."
    )
MODERATION_ENDPOINT = env.str("MODERATION_ENDPOINT", default="openai")
MODERATION_MODEL = env.str("MODERATION_MODEL", default="omni-moderation-latest")
EXPORT_EXPIRY_DAYS = env.int("EXPORT_EXPIRY_DAYS", default=7)

# --- Researcher accounts: verified email, team invitations, sign-in and reset throttling -------
# (kept in one block: see studyplatform/accounts/ and the README's "Researcher accounts and
# team invitations" section)
from datetime import timedelta as _timedelta  # noqa: E402

INSTALLED_APPS += ["axes", "studyplatform.accounts"]
MIDDLEWARE += [
    "studyplatform.accounts.middleware.VerifiedEmailMiddleware",
    # Last, as django-axes requires: it turns a flagged lockout into the 429 page.
    "axes.middleware.AxesMiddleware",
]
# AxesStandaloneBackend first: it refuses locked-out sign-ins before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed sign-ins counted per username and, separately, per client address; either reaching the
# limit within the cool-off period locks that username / that client until the period passes.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = _timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
# Client addresses honour TRUSTED_PROXIES (never a forwarding header from anyone else).
AXES_CLIENT_IP_CALLABLE = "studyplatform.core.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "studyplatform.accounts.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# A successful sign-in must not wipe the per-client count (it would let an attacker with an
# account of their own interleave good sign-ins to keep guessing someone else's password).
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False
# Email verification links and team invitations.
EMAIL_VERIFICATION_MAX_AGE_S = env.int("EMAIL_VERIFICATION_MAX_AGE_S", default=3 * 24 * 60 * 60)
TEAM_INVITATION_MAX_AGE_DAYS = env.int("TEAM_INVITATION_MAX_AGE_DAYS", default=14)
# Per hour: account emails (verification links, "someone tried to sign up" notices) per address;
# sign-ups per client; password-reset requests per address and per client.
ACCOUNT_EMAIL_LIMIT = env.int("ACCOUNT_EMAIL_LIMIT", default=5)
SIGNUP_CLIENT_LIMIT = env.int("SIGNUP_CLIENT_LIMIT", default=20)
PASSWORD_RESET_EMAIL_LIMIT = env.int("PASSWORD_RESET_EMAIL_LIMIT", default=3)
PASSWORD_RESET_CLIENT_LIMIT = env.int("PASSWORD_RESET_CLIENT_LIMIT", default=20)
# A participant's "download my data" archive (encrypted on disk) is deleted this long after it
# was built; they can prepare a new one at any time.
DATA_DOWNLOAD_EXPIRY_HOURS = env.int("DATA_DOWNLOAD_EXPIRY_HOURS", default=72)
