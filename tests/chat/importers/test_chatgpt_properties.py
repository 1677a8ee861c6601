"""Property tests: random message trees parse, counts match a reference, junk is refused cleanly."""

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studyplatform.chat.importers import ImportFormatError, parse_export

ROLES = ["user", "assistant", "system", "tool"]
KINDS = ["text", "multimodal_text", "code", "user_editable_context", "thoughts"]
IMAGE = {"content_type": "image_asset_pointer", "asset_pointer": "file-service://file-x"}

words = st.text(
    alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=8
)
json_scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | words
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(words, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def raw_messages(draw) -> dict[str, Any] | None:
    if draw(st.integers(0, 5)) == 0:
        return None  # a null-message node, like the root of real exports
    kind = draw(st.sampled_from(KINDS))
    strings = draw(st.lists(words, max_size=3))
    if kind == "code":
        content = {"content_type": "code", "text": "\n".join(strings)}
    elif kind == "multimodal_text":
        content = {"content_type": kind, "parts": [*strings, *([IMAGE] * draw(st.integers(0, 2)))]}
    elif kind == "thoughts":
        content = {"content_type": kind, "thoughts": []}
    else:
        content = {"content_type": kind, "parts": strings}
    return {
        "author": {"role": draw(st.sampled_from(ROLES))},
        "content": content,
        "create_time": draw(st.none() | st.floats(0, 2e9)),
        "metadata": {
            "is_visually_hidden_from_conversation": draw(st.booleans()),
            "is_user_system_message": draw(st.integers(0, 9)) == 0,
        },
    }


@st.composite
def conversations(draw, index: int = 0) -> dict[str, Any]:
    size = draw(st.integers(0, 25))
    ids = [f"n{i}" for i in range(size)]
    # Each node's parent is an earlier node (or none): a forest, built without cycles.
    parents = [draw(st.sampled_from([None, *ids[:i]])) for i in range(size)]
    order = draw(st.permutations(range(size)))  # mapping order must not matter
    mapping: dict[str, Any] = {}
    for i in order:
        mapping[ids[i]] = {"id": ids[i], "parent": parents[i], "message": draw(raw_messages())}
    for i in order:
        mapping[ids[i]]["children"] = [ids[j] for j in order if parents[j] == ids[i]]
    current = draw(st.sampled_from([None, "missing", *ids]))
    return {
        "id": f"conv-{index}",
        "create_time": draw(st.none() | st.floats(0, 2e9)),
        "mapping": mapping,
        "current_node": current,
    }


def reference_text(content: dict[str, Any]) -> tuple[str, bool]:
    """(text, has a placeholder) computed straight from the generated content."""
    if content["content_type"] == "code":
        return content["text"], False
    if content["content_type"] == "thoughts":
        return "", True
    strings = [p for p in content["parts"] if isinstance(p, str) and p]
    return "\n".join(strings), any(isinstance(p, dict) for p in content["parts"])


def reference_kept(conv: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """node id -> (role, text) of the nodes the counting rule says are kept."""
    kept = {}
    for node_id, node in conv["mapping"].items():
        msg = node["message"]
        if msg is None:
            continue
        meta = msg["metadata"]
        if msg["content"]["content_type"] == "user_editable_context":
            continue
        if meta["is_user_system_message"] or meta["is_visually_hidden_from_conversation"]:
            continue
        text, placeholder = reference_text(msg["content"])
        if text.strip() or placeholder:
            kept[node_id] = (msg["author"]["role"], text)
    return kept


@st.composite
def exports(draw) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 4))
    return [draw(conversations(index=i)) for i in range(count)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exports())
def test_random_trees_parse_and_counts_match_the_reference(export):
    # when
    parsed = parse_export(json.dumps(export).encode())
    # then: the counting rule, computed independently
    expected_messages = sum(
        1
        for conv in export
        for role, text in reference_kept(conv).values()
        if role in ("user", "assistant") and text.strip()
    )
    assert parsed.counts() == {"conversations": len(export), "messages": expected_messages}
    raw_by_id = {conv["id"]: conv for conv in export}
    for conv in parsed.conversations:
        raw = raw_by_id[conv.external_id]
        kept = reference_kept(raw)
        assert {m.external_id: (m.role, m.text) for m in conv.messages} == kept
        # parents come first, and every parent link points to a kept ancestor
        position = {m.external_id: i for i, m in enumerate(conv.messages)}
        for i, m in enumerate(conv.messages):
            ancestor = raw["mapping"][m.external_id]["parent"]
            while ancestor is not None and ancestor not in kept:
                ancestor = raw["mapping"][ancestor]["parent"]
            assert m.parent_external_id == ancestor
            assert ancestor is None or position[ancestor] < i
        # the active branch is exactly the kept part of current_node's path to the root
        current = raw["current_node"]
        if current in raw["mapping"]:
            path = set()
            while current is not None:
                path.add(current)
                current = raw["mapping"][current]["parent"]
            assert {m.external_id for m in conv.messages if m.is_active_branch} == path & set(kept)


def corrupt(value: Any, path: list[int], junk: Any) -> Any:
    """Replace the element reached by following ``path`` (indices into containers) with junk."""
    if not path or not isinstance(value, list | dict) or not value:
        return junk
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[key] = corrupt(value[key], path[1:], junk)
    return copy


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exports(), st.lists(st.integers(0, 50), max_size=7), json_values)
def test_corrupted_exports_either_parse_or_raise_import_format_error(export, path, junk):
    data = json.dumps(corrupt(export, path, junk)).encode()
    try:
        parsed = parse_export(data)
    except ImportFormatError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert parsed.counts()["conversations"] >= 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_either_parse_or_raise_import_format_error(data):
    try:
        parse_export(data)
    except ImportFormatError as exc:
        assert str(exc) and "\n" not in str(exc)
