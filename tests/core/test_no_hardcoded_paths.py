"""Every link to one of the platform's own pages comes from reverse() / {% url %}.

A hard-coded "/api/studies/..." in a template, an email or a view keeps working until the route
moves, then sends people to a 404 (or, as the safety emails did, to the raw API instead of the
console page). This test reads the application's Python strings, templates and scripts and fails
on any literal that starts with one of the site's top-level URL prefixes. The prefixes are read
from the root URLconf, so a new top-level route is covered without editing this file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.urls import get_resolver

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("studyplatform", "surveys", "analysis")
SKIP_PARTS = {"migrations", "vendor", "__pycache__"}

# (file, literal) pairs that must stay paths, each with the reason. An entry that no longer
# matches anything fails the test, so the list cannot quietly grow stale.
ALLOWED = {
    # The start-up banner is printed by the process launcher before Django is configured, so
    # there is no URLconf to reverse against.
    ("studyplatform/launcher.py", "/api/docs/"),
    ("studyplatform/launcher.py", "/s/demo/"),
    ("studyplatform/launcher.py", "/console/"),
    ("studyplatform/launcher.py", "/admin/"),
    ("studyplatform/launcher.py", "/healthz"),
    # The access-log redactor matches raw request paths (it has no resolver match to look at).
    ("studyplatform/core/access_log.py", "/p/r/|/p/signin/"),
    # A log message naming the health endpoint, not a link.
    ("studyplatform/core/beat_scheduler.py", "/healthz"),
    # An example value in the OpenAPI document (what a finished run's report_url looks like).
    ("analysis/api.py", "/api/studies/companion-rct/analysis-runs/3/report/"),
}


def _first_segments(patterns) -> set[str]:
    found = set()
    for pattern in patterns:
        first = re.sub(r"[^A-Za-z0-9_-].*", "", str(pattern.pattern).lstrip("^").split("/")[0])
        if first:
            found.add(first)
        elif hasattr(pattern, "url_patterns"):  # include() mounted at the root: look inside
            found |= _first_segments(pattern.url_patterns)
    return found


def _prefixes() -> list[str]:
    """First path segments of the site's routes ("api", "console", "p", "s", "healthz", ...)."""
    return sorted(_first_segments(get_resolver().url_patterns), key=len, reverse=True)


def _path_re() -> re.Pattern:
    alternatives = "|".join(re.escape(p) for p in _prefixes())
    # A path starts a literal or follows a quote, space, "=" or "(" (so "text/event-stream" and
    # "https://host/api/..." in a third party's docs are not mistaken for one of ours).
    return re.compile(rf"""(?:^|[\s"'`(=])(/(?:{alternatives})(?:/[^\s"'`){{]*|\b))""")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _python_literals(text: str) -> list[str]:
    """String constants (including the literal parts of f-strings), docstrings excluded:
    comments and docstrings may name a path to explain it."""
    tree = ast.parse(text)
    docstrings = _docstring_nodes(tree)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


_TEMPLATE_COMMENTS = re.compile(
    r"{#.*?#}|{%\s*comment\s*%}.*?{%\s*endcomment\s*%}|<!--.*?-->", re.DOTALL
)
_JS_COMMENTS = re.compile(r"/\*.*?\*/|(?<![:\"'])//[^\n]*", re.DOTALL)


def _sources():
    for top in SOURCE_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or SKIP_PARTS & set(path.parts):
                continue
            rel = path.relative_to(ROOT).as_posix()
            if path.suffix == ".py":
                if path.name in {"urls.py", "api_urls.py"}:
                    continue  # route definitions are where paths belong
                yield rel, _python_literals(path.read_text())
            elif path.suffix in {".html", ".txt"} and "/templates/" in f"/{rel}":
                yield rel, [_TEMPLATE_COMMENTS.sub("", path.read_text())]
            elif path.suffix == ".js" and not path.name.endswith(".min.js"):
                yield rel, [_JS_COMMENTS.sub("", path.read_text())]


def find_hardcoded_paths() -> list[tuple[str, str]]:
    pattern = _path_re()
    hits = []
    for rel, chunks in _sources():
        for chunk in chunks:
            hits += [(rel, m.group(1)) for m in pattern.finditer(chunk)]
    return hits


def _allowed(hit: tuple[str, str], allowed: set[tuple[str, str]]) -> bool:
    rel, literal = hit
    return any(rel == a_rel and literal.startswith(a_lit) for a_rel, a_lit in allowed)


def test_no_app_path_is_hard_coded_in_templates_emails_views_or_scripts():
    hits = find_hardcoded_paths()
    offending = [h for h in hits if not _allowed(h, ALLOWED)]
    assert offending == [], (
        "Use reverse() / {% url %} (or site_url() for emails) instead of these paths: "
        f"{offending}"
    )


def test_every_allow_list_entry_is_still_needed():
    hits = find_hardcoded_paths()
    stale = [a for a in sorted(ALLOWED) if not any(_allowed(h, {a}) for h in hits)]
    assert stale == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ('x = f"{settings.SITE_URL}/p/signin/{token}/"', ["/p/signin/{token}/"]),
        ('x = "/api/studies/" + slug', ["/api/studies/"]),
        ('x = "text/event-stream"', []),
        ('"""Mounted under /api/."""\nx = 1', []),
    ],
)
def test_the_detector_finds_paths_in_python_literals(source, expected):
    pattern = _path_re()
    literals = _python_literals(source)
    assert [m.group(1) for lit in literals for m in pattern.finditer(lit)] == [
        e.split("{")[0] for e in expected
    ]


def test_the_detector_finds_paths_in_templates_but_not_in_comments():
    pattern = _path_re()
    text = _TEMPLATE_COMMENTS.sub(
        "", '{# linked as /console/x/ #}<a href="/console/{{ study.slug }}/team/">'
    )
    assert [m.group(1) for m in pattern.finditer(text)] == ["/console/"]
