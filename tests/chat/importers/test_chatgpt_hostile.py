"""Hostile and broken uploads: each is refused with the exact one-line reason a user sees."""

import io
import json
import random
import struct
import zipfile
from typing import Any

import pytest

from studyplatform.chat.importers import ImportFormatError, Limits, parse_export
from studyplatform.chat.importers.chatgpt import _read_limited


def zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def node(node_id: str, parent: str | None, children: list[str], msg: Any = None) -> dict:
    return {"id": node_id, "message": msg, "parent": parent, "children": children}


def user_message(content: Any = None, **overrides: Any) -> dict:
    msg = {
        "id": "m",
        "author": {"role": "user"},
        "create_time": None,
        "content": content if content is not None else {"content_type": "text", "parts": ["hi"]},
        "metadata": {},
    }
    msg.update(overrides)
    return msg


def export_with(mapping: Any, conv_id: str = "x", **fields: Any) -> bytes:
    conv = {"id": conv_id, "title": "t", "create_time": 1.0, "mapping": mapping, **fields}
    return json.dumps([conv]).encode()


def rejects(source: Any, limits: Limits | None = None) -> str:
    with pytest.raises(ImportFormatError) as excinfo:
        parse_export(source, limits=limits or Limits())
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- zip bombs and sizes -----------------------------------------------------------------------


def test_it_refuses_a_zip_bomb_by_its_compression_ratio():
    # given: 5 MB of spaces that deflate to a few kilobytes
    bomb = zip_of({"conversations.json": b"[" + b" " * 5_000_000 + b"]"})
    info = zipfile.ZipFile(io.BytesIO(bomb)).getinfo("conversations.json")
    ratio = info.file_size / info.compress_size
    assert ratio > 900
    # when / then
    assert rejects(bomb) == (f"the archive looks like a zip bomb (compression ratio {ratio:.0f}:1)")


def test_it_refuses_a_member_larger_than_the_uncompressed_limit():
    noise = random.Random(0).randbytes(3_000)  # incompressible, so not a bomb
    archive = zip_of({"conversations.json": noise})
    limits = Limits(max_json_bytes=2_000)
    assert rejects(archive, limits) == "conversations.json is larger than the 2 KB limit"


def test_the_streaming_read_stops_past_the_size_limit_whatever_the_header_says():
    # given: a decompressed stream longer than the limit (as if the header had lied)
    stream = io.BytesIO(b"x" * 5_000)
    limits = Limits(max_json_bytes=4_096)
    # when / then
    with pytest.raises(ImportFormatError) as excinfo:
        _read_limited(stream, 5_000, limits)
    assert str(excinfo.value) == "conversations.json is larger than the 4.096 KB limit"


def test_the_streaming_read_stops_past_the_compression_ratio():
    stream = io.BytesIO(b" " * 50_000)
    limits = Limits(compression_ratio_min_bytes=1_000)
    with pytest.raises(ImportFormatError) as excinfo:
        _read_limited(stream, 10, limits)
    assert str(excinfo.value) == "the archive looks like a zip bomb (compression ratio over 100:1)"


def test_a_header_that_understates_the_size_does_not_get_more_bytes_through():
    # given: a member whose local and central headers claim 10 bytes instead of 100,000
    archive = bytearray(zip_of({"conversations.json": b"[" + b" " * 99_998 + b"]"}))
    local = archive.find(b"PK\x03\x04")
    central = archive.find(b"PK\x01\x02")
    struct.pack_into("<I", archive, local + 22, 10)
    struct.pack_into("<I", archive, central + 24, 10)
    # then: zipfile stops at the claimed size and the checksum gives the forgery away
    assert rejects(bytes(archive)) == (
        "the archive is damaged (Bad CRC-32 for file 'conversations.json')"
    )


def test_it_refuses_an_upload_over_the_upload_limit():
    assert rejects(b"[" + b" " * 200 + b"]", Limits(max_upload_bytes=100)) == (
        "the file is larger than the 100 bytes upload limit"
    )


def test_it_refuses_a_bare_json_over_the_uncompressed_limit():
    assert rejects(b"[" + b" " * 2_000 + b"]", Limits(max_json_bytes=1_000)) == (
        "conversations.json is larger than the 1 KB limit"
    )


def test_it_refuses_an_archive_with_too_many_members():
    members = {f"file-{i}.png": b"x" for i in range(5)} | {"conversations.json": b"[]"}
    assert rejects(zip_of(members), Limits(max_members=3)) == "the archive has more than 3 files"


# --- what is read from the archive -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../conversations.json", "'../conversations.json'"),
        ("/etc/conversations.json", "'/etc/conversations.json'"),
        ("export/../../conversations.json", "'export/../../conversations.json'"),
        ("..\\conversations.json", "'..\\\\conversations.json'"),
        ("C:/conversations.json", "'C:/conversations.json'"),
    ],
)
def test_it_refuses_archives_with_traversal_names(name, shown):
    archive = zip_of({"conversations.json": b"[]", name: b"[]"})
    assert rejects(archive) == f"the archive contains an unsafe file name ({shown})"


def test_it_needs_a_conversations_json():
    archive = zip_of({"chat.html": b"<html></html>", "a/b/conversations.json": b"[]"})
    assert rejects(archive) == "the archive has no conversations.json"


def test_it_refuses_two_candidate_conversations_json():
    archive = zip_of({"a/conversations.json": b"[]", "b/conversations.json": b"[]"})
    assert rejects(archive) == "the archive has more than one conversations.json"


def test_it_prefers_the_root_conversations_json():
    archive = zip_of({"a/conversations.json": b"[{}]", "conversations.json": b"[]"})
    assert parse_export(archive).member_name == "conversations.json"


def test_it_refuses_an_encrypted_archive():
    archive = bytearray(zip_of({"conversations.json": b"[]"}))
    # set the "encrypted" flag bit in both the local and the central header
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = archive.find(signature) + offset
        (flags,) = struct.unpack_from("<H", archive, at)
        struct.pack_into("<H", archive, at, flags | 0x1)
    assert rejects(bytes(archive)) == (
        "the archive is encrypted; export it again without a password"
    )


def test_it_refuses_a_truncated_archive():
    archive = zip_of({"conversations.json": b"[]"})
    assert rejects(archive[:40]) == "the archive is damaged (File is not a zip file)"


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n not an export", b"", b"hello"])
def test_it_refuses_files_that_are_neither_zip_nor_json(data):
    assert rejects(data) == "the file is neither a ChatGPT export zip nor a conversations.json"


def test_it_reports_a_missing_file():
    assert rejects("/nonexistent/export.zip") == (
        "the file could not be read (No such file or directory)"
    )


# --- conversations.json itself -----------------------------------------------------------------


def test_it_reports_where_the_json_is_malformed():
    assert rejects(b'[\n  {\n    "id": ,\n') == (
        "conversations.json is not valid JSON (line 3, column 11)"
    )


def test_it_reports_malformed_json_inside_a_zip_the_same_way():
    archive = zip_of({"conversations.json": b'[\n  {\n    "id": ,\n'})
    assert rejects(archive) == "conversations.json is not valid JSON (line 3, column 11)"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'["\xff"]', "conversations.json is not UTF-8 text"),
        (b"[" * 100_000, "conversations.json is nested too deeply"),
        (b"[" + b"1" * 5_000 + b"]", "conversations.json has a number too long to read"),
        (
            b'{"conversations": []}',
            "conversations.json should hold a list of conversations, not an object",
        ),
        (b'["a conversation?"]', "conversation 1 is a string, not an object"),
        (b'[{"title": "no id"}]', "conversation 1 has no id"),
        (b'[{"id": "a"}, {"conversation_id": "a"}]', "conversation 2 repeats the id 'a'"),
    ],
)
def test_it_refuses_wrong_top_level_shapes(data, message):
    assert rejects(data) == message


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ([], "conversation 1 ('x'): mapping is a list, not an object"),
        ({"r": "node"}, "conversation 1 ('x'): node 'r' is a string, not an object"),
        (
            {"r": node("r", 7, [])},
            "conversation 1 ('x'): node 'r' has a parent that is not a string",
        ),
        (
            {"r": node("r", None, "a")},
            "conversation 1 ('x'): node 'r' has children that are not a list",
        ),
        (
            {"r": node("r", None, [], "hello")},
            "conversation 1 ('x'): node 'r' has a message that is a string",
        ),
        (
            {"r": node("r", None, [], user_message(content=["hi"]))},
            "conversation 1 ('x'): node 'r' has content that is a list",
        ),
        (
            {"r": node("r", None, [], user_message({"content_type": "text", "parts": "hi"}))},
            "conversation 1 ('x'): node 'r' has parts that are not a list",
        ),
        (
            {"r": node("r", None, [], user_message(author="user"))},
            "conversation 1 ('x'): node 'r' has an author that is a string",
        ),
        (
            {"r\x00": node("r\x00", None, [])},
            "conversation 1 ('x'): node 'r\\x00' has an unusable id",
        ),
    ],
)
def test_it_refuses_wrong_types_inside_a_conversation(mapping, message):
    assert rejects(export_with(mapping)) == message


# --- the message tree --------------------------------------------------------------------------


def test_it_detects_a_parent_loop():
    # given: a proper root, and two nodes that are each other's parent (plus one hanging below)
    mapping = {
        "root": node("root", None, []),
        "below": node("below", "a", []),
        "a": node("a", "b", ["below"]),
        "b": node("b", "a", ["a"]),
    }
    assert rejects(export_with(mapping)) == (
        "conversation 1 ('x'): the message tree has a cycle at node 'a'"
    )


def test_it_detects_a_node_that_is_its_own_parent():
    mapping = {"root": node("root", None, []), "self": node("self", "self", ["self"])}
    assert rejects(export_with(mapping)) == (
        "conversation 1 ('x'): the message tree has a cycle at node 'self'"
    )


def test_it_detects_a_dangling_parent():
    mapping = {"root": node("root", None, []), "a": node("a", "ghost", [])}
    assert rejects(export_with(mapping)) == (
        "conversation 1 ('x'): node 'a' points to a missing parent 'ghost'"
    )


def chain(length: int) -> dict:
    ids = [f"n{i}" for i in range(length)]
    return {
        node_id: node(
            node_id,
            ids[i - 1] if i else None,
            [ids[i + 1]] if i + 1 < length else [],
            user_message({"content_type": "text", "parts": [f"turn {i}"]}),
        )
        for i, node_id in enumerate(ids)
    }


def test_it_refuses_a_tree_deeper_than_the_limit():
    assert rejects(export_with(chain(50)), Limits(max_tree_depth=10)) == (
        "conversation 1 ('x'): the message tree is deeper than 10 levels"
    )


def test_it_walks_a_very_deep_tree_without_recursion():
    # 5,000 levels would pass Python's recursion limit (1,000) if the walk were recursive
    parsed = parse_export(export_with(chain(5_000), current_node="n4999"))
    messages = parsed.conversations[0].messages
    assert len(messages) == 5_000
    assert messages[-1].parent_external_id == "n4998"
    assert all(m.is_active_branch for m in messages)


def test_it_refuses_more_nodes_than_the_limit():
    assert rejects(export_with(chain(6)), Limits(max_nodes_per_conversation=5)) == (
        "conversation 1 ('x') has more than 5 nodes"
    )


def test_it_refuses_more_conversations_than_the_limit():
    data = json.dumps([{"id": f"c{i}", "mapping": {}} for i in range(3)]).encode()
    assert rejects(data, Limits(max_conversations=2)) == (
        "conversations.json has more than 2 conversations"
    )


def test_error_messages_shorten_long_hostile_ids():
    long_id = "z" * 500
    message = rejects(export_with([], conv_id=long_id))
    assert message == f"conversation 1 ('{'z' * 60}…'): mapping is a list, not an object"


def test_it_tolerates_odd_values_where_they_are_optional():
    # given: unusable timestamps, metadata of the wrong type, unknown parts and content types
    mapping = {
        "r": node(
            "r",
            None,
            ["a"],
            user_message(
                {"content_type": "multimodal_text", "parts": ["hi\x00", 3, None, {"x": 1}]},
                create_time=1e300,
                metadata=["not", "a", "dict"],
            ),
        ),
        "a": node(
            "a",
            "r",
            [],
            {
                "author": {"role": "assistant"},
                "content": {"content_type": "brand_new_type", "payload": {}},
                "create_time": float("nan"),
                "metadata": {"finish_details": "stop", "model_slug": 5},
            },
        ),
    }
    data = export_with(mapping, create_time="yesterday", title=["t"], update_time=True)
    # when
    conv = parse_export(data).conversations[0]
    # then
    assert (conv.title, conv.create_time, conv.update_time) == ("", None, None)
    first, second = conv.messages
    assert (first.text, first.parts_meta, first.create_time) == (
        "hi",
        ["[part: a number]", "[part: unknown]"],
        None,
    )
    assert (second.text, second.parts_meta, second.finish_reason, second.model_slug) == (
        "",
        ["[brand_new_type]"],
        None,
        None,
    )
