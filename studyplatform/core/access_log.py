"""Keep secrets out of the web server's access log.

uvicorn logs every request line, query string included, before any Django code runs: a study
link's `?PROLIFIC_PID=...&SESSION_ID=...` (recruitment-panel ids, direct identifiers) and a
pilot invitation token would sit in the log in clear, as would the secret in a personal return
link (`/p/r/<token>/`) or an emailed sign-in link (`/p/signin/<token>/`).

`AccessLogRedactor` is a logging filter for the `uvicorn.access` logger that drops the query
string and replaces those secret path segments with `[redacted]`. `uvicorn_logging.json` next to
this package wires it in: `uvicorn ... --log-config studyplatform/uvicorn_logging.json` (the
launcher does this for `make run`).

Django's own `django.request` logger writes the path of every 4xx/5xx response ("Not Found:
/p/r/<token>/"); `RequestLogRedactor` (wired in settings.LOGGING) redacts those paths the same way.
"""

from __future__ import annotations

import logging
import re

# Paths whose last segment is a bearer secret. `/p/signin/password/` is a form, not a token.
_SECRET_PATHS = re.compile(r"^(/p/r/|/p/signin/(?!password/))[^/]+(/?)$")
REDACTED = "[redacted]"


def redact_path(path: str) -> str:
    """The request path without its query string or fragment, secret segments replaced."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    return _SECRET_PATHS.sub(rf"\g<1>{REDACTED}\g<2>", path)


class AccessLogRedactor(logging.Filter):
    """Rewrite uvicorn's access record in place; never drops a record.

    uvicorn logs `'%s - "%s %s HTTP/%s" %d'` with args (client, method, path with query,
    http version, status); the path is the third argument.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


class RequestLogRedactor(logging.Filter):
    """Redact request paths among the arguments of `django.request` records (never drops one).

    Django logs `"%s: %s"` with (reason phrase, request.path); any argument that looks like a
    path is rewritten, so a failing return or sign-in link never leaves its secret in the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(
                redact_path(arg) if isinstance(arg, str) and arg.startswith("/") else arg
                for arg in args
            )
        return True
