"""The safety detector is pure Python (no Django, no platform import), so it can be run and
tested on its own. That safety imports neither chat nor surveys is checked with every other
app's imports by tests/core/test_import_layers.py."""

from __future__ import annotations

import ast
from pathlib import Path

import studyplatform.safety

SAFETY = Path(studyplatform.safety.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_detector_is_pure_python():
    for path in (SAFETY / "detector").rglob("*.py"):
        assert not any(name.split(".")[0] in ("django", "studyplatform") for name in _imports(path))
