"""The ChatGPT export parser on a realistic synthetic export: structure, branches, counts."""

import importlib.util
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from studyplatform.chat.importers import ParsedMessage, parse_export
from studyplatform.chat.importers.chatgpt import conversation_fingerprint, message_fingerprint

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_JSON = FIXTURES / "conversations.json"


def load_builder():
    spec = importlib.util.spec_from_file_location(
        "make_chatgpt_export", FIXTURES / "make_chatgpt_export.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_zip(json_bytes: bytes, member: str = "conversations.json") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("user.json", b'{"id": "user-synthetic"}')
        zf.writestr(member, json_bytes)
        zf.writestr("chat.html", b"<html></html>")
        zf.writestr("file-synthetic123-cat.png", b"\x89PNG not really")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def parsed():
    return parse_export(FIXTURE_JSON)


def by_id(parsed, conv_id):
    return next(c for c in parsed.conversations if c.external_id == conv_id)


def shape(messages: list[ParsedMessage]) -> list[tuple]:
    return [
        (m.external_id, m.parent_external_id, m.role, m.text, m.is_active_branch) for m in messages
    ]


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def test_the_committed_fixture_matches_its_builder():
    # given / when: the builder script renders the fixture
    rendered = load_builder().render()
    # then: the committed file is what the script produces
    assert FIXTURE_JSON.read_text(encoding="utf-8") == rendered


def test_it_orders_conversations_by_create_time_with_undated_last(parsed):
    assert [c.external_id for c in parsed.conversations] == [
        "conv-linear",
        "conv-branching",
        "conv-multimodal",
        "conv-empty",
        "conv-undated",
    ]


def test_it_counts_user_and_assistant_messages_with_text_on_all_branches(parsed):
    # linear 2 + branching 7 + multimodal 5 (not the tool outputs or the thoughts) + undated 2
    assert parsed.counts() == {"conversations": 5, "messages": 16}


def test_it_skips_the_null_root_hidden_system_and_custom_instructions_but_records_them(parsed):
    conv = by_id(parsed, "conv-linear")
    assert conv.title == "Linear chat"
    assert conv.create_time == ts(1_700_000_000)
    assert conv.update_time == ts(1_700_000_060)
    assert conv.default_model_slug == "gpt-4o"
    assert conv.has_custom_instructions is True
    assert shape(conv.messages) == [
        ("c1-u1", None, "user", "Hello there", True),
        ("c1-a1", "c1-u1", "assistant", "Hi! How can I help?", True),
    ]
    reply = conv.messages[1]
    assert reply.model_slug == "gpt-4o"
    assert reply.finish_reason == "stop"
    assert reply.create_time == ts(1_700_000_002)
    assert reply.content_type == "text"
    assert reply.parts_meta == []


def test_it_keeps_every_branch_and_marks_the_one_current_node_is_on(parsed):
    conv = by_id(parsed, "conv-branching")
    assert conv.has_custom_instructions is False
    assert conv.current_node == "c2-a3"
    assert conv.active_leaf_id == "c2-a3"
    # then: pre-order, siblings in the children order; the edited question (u1b) is a root
    # message because its parents (null root, hidden system) are skipped
    assert shape(conv.messages) == [
        ("c2-u1", None, "user", "What's the capital of Australia?", True),
        ("c2-a1", "c2-u1", "assistant", "Sydney.", False),
        ("c2-a1b", "c2-u1", "assistant", "Canberra.", True),
        ("c2-u2", "c2-a1b", "user", "Thanks", True),
        ("c2-a3", "c2-u2", "assistant", "You're welcome.", True),
        ("c2-u1b", None, "user", "What is the capital of Australia, exactly?", False),
        ("c2-a2", "c2-u1b", "assistant", "Canberra is the capital.", False),
    ]
    assert [m.finish_reason for m in conv.messages] == [
        None,
        "interrupted",
        "stop",
        None,
        None,
        None,
        "stop",
    ]


def test_it_puts_parents_before_children(parsed):
    for conv in parsed.conversations:
        seen: set[str] = set()
        for m in conv.messages:
            assert m.parent_external_id is None or m.parent_external_id in seen
            seen.add(m.external_id)


def test_it_reads_multimodal_code_tool_and_unknown_content(parsed):
    conv = by_id(parsed, "conv-multimodal")
    got = [
        (m.external_id, m.role, m.content_type, m.text, m.parts_meta, m.parent_external_id)
        for m in conv.messages
    ]
    assert got == [
        (
            "c3-u1",
            "user",
            "multimodal_text",
            "What is in it?",
            ["[image: image_asset_pointer]"],
            None,
        ),
        ("c3-a1", "assistant", "text", "A cat.", [], "c3-u1"),
        ("c3-u2", "user", "text", "Count words in 'a b c'", [], "c3-a1"),
        ("c3-think", "assistant", "thoughts", "", ["[thoughts]"], "c3-u2"),
        ("c3-a2", "assistant", "code", "print(len('a b c'.split()))", [], "c3-think"),
        ("c3-out", "tool", "execution_output", "3", [], "c3-a2"),
        ("c3-quote", "tool", "tether_quote", "Words are separated by spaces.", [], "c3-out"),
        ("c3-a3", "assistant", "text", "It printed 3.", [], "c3-quote"),
    ]
    # create_time may be null on a message
    assert conv.messages[2].create_time is None
    assert conv.messages[4].model_slug == "o3"


def test_it_falls_back_to_the_last_branch_without_current_node_and_keeps_null_dates(parsed):
    conv = by_id(parsed, "conv-undated")
    assert conv.create_time is None
    assert conv.update_time is None
    assert conv.current_node is None
    assert conv.active_leaf_id == "c4-a1"
    assert shape(conv.messages) == [
        ("c4-u1", None, "user", "Is this dated?", True),
        ("c4-a1", "c4-u1", "assistant", "No.", True),
    ]


def test_an_empty_conversation_counts_as_a_conversation_with_no_messages(parsed):
    conv = by_id(parsed, "conv-empty")
    assert conv.title == ""
    assert conv.messages == []
    assert conv.active_leaf_id is None


def test_zip_and_bare_json_give_the_same_result():
    raw = FIXTURE_JSON.read_bytes()
    from_json = parse_export(raw)
    from_zip = parse_export(export_zip(raw))
    assert from_zip.conversations == from_json.conversations
    assert (from_json.source, from_zip.source) == ("json", "zip")
    assert from_zip.member_name == "conversations.json"
    assert from_zip.member_count == 4


def test_it_accepts_paths_strings_and_file_objects(tmp_path):
    raw = FIXTURE_JSON.read_bytes()
    archive = tmp_path / "export.zip"
    archive.write_bytes(export_zip(raw))
    expected = parse_export(raw).conversations
    assert parse_export(archive).conversations == expected
    assert parse_export(str(archive)).conversations == expected
    with archive.open("rb") as fp:
        assert parse_export(fp).conversations == expected


def test_it_finds_conversations_json_one_directory_deep():
    raw = FIXTURE_JSON.read_bytes()
    result = parse_export(export_zip(raw, member="chatgpt-export-2024/conversations.json"))
    assert result.member_name == "chatgpt-export-2024/conversations.json"
    assert result.counts() == {"conversations": 5, "messages": 16}


def test_fingerprints_are_stable_and_keyed_on_conversation_and_node(parsed):
    conv = by_id(parsed, "conv-branching")
    assert conv.fingerprint == conversation_fingerprint("conv-branching")
    assert conv.messages[0].fingerprint == message_fingerprint("conv-branching", "c2-u1")
    # the same node id in another conversation is a different message
    assert message_fingerprint("a", "n") != message_fingerprint("b", "n")
    assert message_fingerprint("a", "bc") != message_fingerprint("ab", "c")
    # a re-import of the same file yields the same keys
    again = by_id(parse_export(FIXTURE_JSON), "conv-branching")
    assert [m.fingerprint for m in again.messages] == [m.fingerprint for m in conv.messages]
    all_messages = [m for c in parsed.conversations for m in c.messages]
    assert len(all_messages) == 19
    assert len({m.fingerprint for m in all_messages}) == 19
