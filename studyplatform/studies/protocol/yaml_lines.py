"""Parse YAML into plain data while remembering the line of every node, for error messages.

Paths use the notation of error messages: `arms[1].model.name`. Dates become ISO strings so a
protocol is always plain JSON-compatible data.

Protocol text is untrusted input, so the loader has ceilings that hold before anything is
built: a size limit, a nesting limit counted while nodes are composed (so neither a deep
document nor the check itself can exhaust the stack), and no anchors or aliases at all (a
protocol does not need them, and aliases are how a few hundred bytes expand to gigabytes).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml

# Ceilings for protocol text. The example protocols are 6-10 KB and 6 levels deep.
MAX_PROTOCOL_BYTES = 256 * 1024
MAX_PROTOCOL_DEPTH = 20


# A place in a document as keys and list indexes: ("arms", 1, "model", "name").
PathParts = tuple[str | int, ...]


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, line: int | None, parts: PathParts = ()):
        super().__init__(message)
        self.message = message
        self.line = line
        self.parts = tuple(parts)
        self.path = path_text(self.parts)


class YamlRefused(YamlSyntaxError):
    """The text exceeds a ceiling (size, nesting, anchors/aliases) and was not processed."""


def join_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def path_text(parts: PathParts) -> str:
    """("arms", 1, "model", "name") -> "arms[1].model.name" ("" for the whole document)."""
    path = ""
    for part in parts:
        path = join_path(path, part)
    return path


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses anchors, aliases and deep nesting as it meets them.

    Checks happen in `compose_node`, before the node (or any alias expansion) exists, and the
    depth counter stops recursion at `max_depth` levels, far below Python's recursion limit.
    """

    def __init__(self, stream: str, max_depth: int):
        super().__init__(stream)
        self._depth = 0
        self._max_depth = max_depth

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise YamlRefused("YAML anchors and aliases are not allowed", line)
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            if self._depth >= self._max_depth:
                raise YamlRefused(
                    f"the document is nested too deeply (at most {self._max_depth} levels)", line
                )
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


# Scalars a protocol may hold; anything else (!!binary bytes, unknown tags) is refused.
_PLAIN = (str, int, float, bool, type(None))


def _scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    line = node.start_mark.line + 1
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        raise YamlSyntaxError(f"invalid YAML: {problem}", line) from None
    except ValueError:
        # e.g. an integer with more digits than Python converts, or !!int "abc"
        message = f"invalid YAML: cannot read the value {node.value[:40]!r}"
        raise YamlSyntaxError(message, line) from None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if not isinstance(value, _PLAIN):
        raise YamlSyntaxError(f"unsupported YAML value (tag {node.tag})", line)
    return value


def load_with_lines(
    text: str, *, max_bytes: int = MAX_PROTOCOL_BYTES, max_depth: int = MAX_PROTOCOL_DEPTH
) -> tuple[Any, dict[str, int]]:
    """Return (data, {path: 1-based line}). Raises YamlSyntaxError with a line number."""
    lines: dict[str, int] = {}
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise YamlRefused(
            f"the document is too large ({size // 1024} KB; at most {max_bytes // 1024} KB)", None
        )
    try:
        loader = _BoundedLoader(text, max_depth)
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
    except RecursionError:  # not expected with the depth limit; never let it become a 500
        raise YamlRefused("the document is nested too deeply", None) from None
    if root is None:
        return None, lines
    loader = yaml.SafeLoader("")

    def walk(node: yaml.Node, parts: PathParts) -> Any:
        path = path_text(parts)
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = _scalar(loader, key_node) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str | int | float | bool) or key is None:
                    raise YamlSyntaxError(
                        "keys must be plain names", key_node.start_mark.line + 1, parts
                    )
                key = str(key)
                if key in out:
                    raise YamlSyntaxError(
                        "duplicate key", key_node.start_mark.line + 1, (*parts, key)
                    )
                out[key] = walk(value_node, (*parts, key))
                # A key's line is where the key is written, which is what a person looks for.
                lines[join_path(path, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(item, (*parts, i)) for i, item in enumerate(node.value)]
        return _scalar(loader, node)

    return walk(root, ()), lines


def line_for(path: str, lines: dict[str, int]) -> int | None:
    """The line of `path`, or of its nearest ancestor that exists in the document."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
