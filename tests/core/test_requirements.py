"""Production installs requirements.txt only: no test or development tool may be in it, and no
module the platform imports at run time may come from the development set alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("studyplatform", "analysis", "surveys")
# Loaded only by pytest (pyproject's addopts), never by the running platform.
TEST_ONLY_MODULES = {ROOT / "studyplatform" / "core" / "pytest_plugin.py"}
# The import name of each development-only distribution.
DEV_IMPORT_NAMES = {
    "pytest": "pytest",
    "pytest-django": "pytest_django",
    "factory-boy": "factory",
    "hypothesis": "hypothesis",
    "playwright": "playwright",
    "ruff": "ruff",
    "statsmodels": "statsmodels",
}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-r"):
            continue
        name = re.split(r"[\[=<>~!]", line, maxsplit=1)[0].strip().lower()
        pins[name] = line
    return pins


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_production_requirements_hold_no_development_tool():
    prod = _pins(ROOT / "requirements.txt")
    assert not set(prod) & set(DEV_IMPORT_NAMES), sorted(set(prod) & set(DEV_IMPORT_NAMES))


def test_the_development_set_includes_production_and_every_tool():
    text = (ROOT / "requirements-dev.txt").read_text()
    assert re.search(r"^-r requirements\.txt$", text, re.MULTILINE)
    assert set(DEV_IMPORT_NAMES) <= set(_pins(ROOT / "requirements-dev.txt"))


def test_the_platform_imports_nothing_from_the_development_set():
    offenders = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path in TEST_ONLY_MODULES:
                continue
            found = _top_level_imports(path) & set(DEV_IMPORT_NAMES.values())
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in sorted(found)]
    assert offenders == []
