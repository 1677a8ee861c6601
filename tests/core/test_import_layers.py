"""No app imports a higher one: the platform's apps form layers, and imports only point down.

Every module of every app is parsed (ast, so imports inside functions count too) and each import
of another app is checked against LAYERS. A lower app that must let a higher one act publishes a
``studyplatform.core.events`` event instead (see that module).

This list is the one place the order is written down (the README's Layout section copies it).
To add an app, put it in the tier it belongs to; apps in one tier may not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

# Lowest first. `safety` sits below chat and surveys because they call its services (raise an
# alert, crisis resources); what safety reads from chat (stored messages) comes through the
# message source chat registers (safety/sources.py), and the protocol validator in studies gets
# the survey instrument library registered by surveys (studies/protocol/validate.py).
LAYERS: list[list[str]] = [
    ["core"],
    ["accounts"],
    ["studies"],
    ["participants"],
    ["safety"],
    ["chat"],
    ["surveys"],
    # Reads chat messages and the protocol; analysis and exports will read its labels. The
    # export anonymizer it uses is registered by exports (classifiers/anonymization.py).
    ["classifiers"],
    ["analysis"],
    # Usage requirements: compliance computed with analysis.features.usage, nudges mailed.
    ["compliance"],
    ["exports"],
    ["console"],
]

# Imports that still point up, each with the reason it has not been removed yet. Empty: every
# app imports only lower ones. An entry added here is debt, and the test fails when an entry is
# no longer needed, so the list cannot go stale.
KNOWN_UPWARD_IMPORTS: dict[tuple[str, str], str] = {}

ROOT = Path(settings.BASE_DIR)
# Where each app's package lives, by app label.
APP_ROOTS = {
    **{p.name: p for p in (ROOT / "studyplatform").iterdir() if (p / "apps.py").exists()},
    "surveys": ROOT / "surveys",
    "analysis": ROOT / "analysis",
}


def rank(app: str) -> int:
    for index, tier in enumerate(LAYERS):
        if app in tier:
            return index
    raise KeyError(app)


def app_of(module: str) -> str | None:
    """The app label a dotted module name belongs to, or None for anything else."""
    parts = module.split(".")
    if parts[0] == "studyplatform" and len(parts) > 1 and parts[1] in APP_ROOTS:
        return parts[1]
    if parts[0] in ("surveys", "analysis"):
        return parts[0]
    return None


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in `source`, at any depth."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # `from studyplatform import chat` imports the app itself
            found += [(node.lineno, name)]
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def upward_imports() -> list[tuple[str, str, str, str]]:
    """(file, line, importing app, imported module) for each import of a higher or equal app."""
    bad = []
    for app, root in APP_ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(ROOT)
            module = ".".join(relative.with_suffix("").parts)
            is_package = path.name == "__init__.py"
            if is_package:
                module = module.removesuffix(".__init__")
            seen = set()
            for line, name in imported_modules(path.read_text(), module, is_package):
                other = app_of(name)
                if other is None or other == app or (other, line) in seen:
                    continue
                seen.add((other, line))
                if rank(other) >= rank(app):
                    bad.append((str(relative), str(line), app, name))
    return bad


def test_every_app_has_a_place_in_the_layer_order():
    missing = sorted(app for app in APP_ROOTS if not any(app in tier for tier in LAYERS))
    assert missing == [], f"add {missing} to LAYERS in {__file__}"


def test_no_app_imports_a_higher_or_same_tier_app():
    found = upward_imports()
    unexpected = [
        f"{file}:{line} ({app}) imports {name}"
        for file, line, app, name in found
        if not any(file == f and name.startswith(m) for f, m in KNOWN_UPWARD_IMPORTS)
    ]
    assert unexpected == []
    stale = [
        key
        for key in KNOWN_UPWARD_IMPORTS
        if not any(file == key[0] and name.startswith(key[1]) for file, _, _, name in found)
    ]
    assert stale == [], "these imports are gone: remove them from KNOWN_UPWARD_IMPORTS"


def test_the_checker_sees_function_level_and_relative_imports():
    # given: a participants module importing surveys inside a function, and a relative import
    source = "def f():\n    from surveys.engine import due_for\nfrom ..chat import models\n"
    # when
    found = imported_modules(source, "studyplatform.participants.views", is_package=False)
    # then: both are seen, the relative one resolved to its absolute name
    assert (2, "surveys.engine") in found
    assert (3, "studyplatform.chat") in found
    assert app_of("surveys.engine") == "surveys" and app_of("studyplatform.chat") == "chat"
    assert rank("surveys") > rank("participants") and rank("chat") > rank("participants")
