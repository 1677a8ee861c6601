"""Chat and surveys call the safety app, not the other way round: safety may read chat's models
and provider adapters (an alert points at a message; moderation calls a provider), but never
chat's services, views or API, and never surveys (a survey registers its alert resolver)."""

from __future__ import annotations

import ast
from pathlib import Path

import studyplatform.safety

SAFETY = Path(studyplatform.safety.__file__).parent
ALLOWED_CHAT = (
    "studyplatform.chat.models",
    "studyplatform.chat.providers",
    "studyplatform.chat.admin",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_safety_imports_no_survey_code_and_only_chats_models_and_providers():
    offending = {
        f"{path.relative_to(SAFETY)}: {name}"
        for path in SAFETY.rglob("*.py")
        for name in _imports(path)
        if name == "surveys"
        or name.startswith("surveys.")
        or (name.startswith("studyplatform.chat") and not name.startswith(ALLOWED_CHAT))
    }
    assert offending == set()


def test_the_detector_is_pure_python():
    for path in (SAFETY / "detector").rglob("*.py"):
        assert not any(name.split(".")[0] in ("django", "studyplatform") for name in _imports(path))
