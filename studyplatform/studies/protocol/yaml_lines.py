"""Parse YAML into plain data while remembering the line of every node, for error messages.

Paths use the notation of error messages: `arms[1].model.name`. Dates become ISO strings so a
protocol is always plain JSON-compatible data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, line: int | None, path: str = ""):
        super().__init__(message)
        self.message = message
        self.line = line
        self.path = path


def join_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_object(node, deep=True)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def load_with_lines(text: str) -> tuple[Any, dict[str, int]]:
    """Return (data, {path: 1-based line}). Raises YamlSyntaxError with a line number."""
    lines: dict[str, int] = {}
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlSyntaxError(f"invalid YAML: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", None) from None
    if root is None:
        return None, lines
    loader = yaml.SafeLoader("")

    def walk(node: yaml.Node, path: str) -> Any:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = _scalar(loader, key_node) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str | int | float | bool) or key is None:
                    raise YamlSyntaxError(
                        "keys must be plain names", key_node.start_mark.line + 1, path
                    )
                key = str(key)
                if key in out:
                    raise YamlSyntaxError(
                        "duplicate key", key_node.start_mark.line + 1, join_path(path, key)
                    )
                child = join_path(path, key)
                out[key] = walk(value_node, child)
                # A key's line is where the key is written, which is what a person looks for.
                lines[child] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(item, join_path(path, i)) for i, item in enumerate(node.value)]
        return _scalar(loader, node)

    return walk(root, ""), lines


def line_for(path: str, lines: dict[str, int]) -> int | None:
    """The line of `path`, or of its nearest ancestor that exists in the document."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
