"""Protocol documents as data: canonical hashing, YAML export in a stable order, and diffs."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import yaml

from .validate import schema
from .yaml_lines import join_path


def content_hash(doc: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form: equal documents hash equally, whatever the key order."""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _resolve(node: dict) -> dict:
    ref = node.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return schema()["$defs"][ref.removeprefix("#/$defs/")]
    return node


def _ordered(value: Any, node: dict | None) -> Any:
    """Order mapping keys as the schema lists them (unknown keys after, alphabetically).

    PostgreSQL's jsonb does not keep key order, so exports order keys themselves; the result is
    the same document on every database, and reads the way docs/protocol.md presents it.
    """
    node = _resolve(node or {})
    if isinstance(value, dict):
        props = node.get("properties", {})
        for sub in node.get("allOf", []):
            props = {**props, **sub.get("then", {}).get("properties", {})}
        order = list(props)
        keys = sorted(value, key=lambda k: (order.index(k) if k in order else len(order), k))
        return {
            k: _ordered(value[k], props.get(k) if isinstance(props.get(k), dict) else None)
            for k in keys
        }
    if isinstance(value, list):
        item = node.get("items") if isinstance(node.get("items"), dict) else None
        return [_ordered(v, item) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.dump(
        _ordered(doc, schema()), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, join_path(path, k), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _flatten(v, join_path(path, i), out)
    else:
        out[path] = value


def diff_documents(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Field-level changes plus a unified YAML diff, for people reviewing a version history."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(old, "", a)
    _flatten(new, "", b)
    changes = []
    for path in sorted(set(a) | set(b)):
        if path not in a:
            changes.append({"path": path, "change": "added", "new": b[path]})
        elif path not in b:
            changes.append({"path": path, "change": "removed", "old": a[path]})
        elif a[path] != b[path]:
            changes.append({"path": path, "change": "changed", "old": a[path], "new": b[path]})
    unified = "".join(
        difflib.unified_diff(
            to_yaml(old).splitlines(keepends=True),
            to_yaml(new).splitlines(keepends=True),
            fromfile="old",
            tofile="new",
        )
    )
    return {"changes": changes, "unified": unified}


def study_languages(doc: Mapping) -> list[str]:
    """The study's languages (English when the protocol names none)."""
    return list(doc.get("study", {}).get("languages") or ["en"])


def text_split(value: Any, languages: list[str]) -> dict[str, str]:
    """A protocol text (string or per-language mapping) as one string per language.

    A plain string applies to every language; it is shown in the first language's field only,
    so saving without touching it keeps it a plain string (see `text_join`).
    """
    if isinstance(value, dict):
        return {lang: value.get(lang, "") for lang in languages}
    out = dict.fromkeys(languages, "")
    if value and languages:
        out[languages[0]] = value
    return out
