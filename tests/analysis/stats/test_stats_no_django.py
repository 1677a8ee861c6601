"""The statistics core stays free of Django so it runs from notebooks and workers alike."""

import ast
from pathlib import Path

STATS = Path(__file__).resolve().parents[3] / "analysis" / "stats"


def test_it_imports_nothing_from_django():
    offenders = []
    for path in sorted(STATS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "django"]
    assert len(list(STATS.glob("*.py"))) >= 6
    assert offenders == []
