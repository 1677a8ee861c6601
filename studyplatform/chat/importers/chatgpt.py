"""Parse ChatGPT's "Export data" archive (or a bare ``conversations.json``) into dataclasses.

The input comes from participants, so it is treated as hostile: every size is bounded by
:class:`Limits`, nothing is ever extracted to disk, only the member named exactly
``conversations.json`` is decompressed (streamed, counting bytes as they come out), and the
message tree is walked iteratively with cycle, dangling-parent and depth checks. Every way a file
can be unusable ends in :class:`ImportFormatError` whose message is one human-readable line that
can be shown to the participant as it is.

This module has no Django imports; it takes bytes, a path or a binary file object and returns
plain dataclasses. ``docs/chatgpt_import.md`` describes the format as handled, what is kept, the
limits, the deduplication keys and the counting rule.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "ImportFormatError",
    "Limits",
    "ParsedConversation",
    "ParsedExport",
    "ParsedMessage",
    "conversation_fingerprint",
    "message_fingerprint",
    "parse_export",
]

MEMBER_NAME = "conversations.json"
FINGERPRINT_PREFIX = "chatgpt"

# Roles whose messages count towards ParsedExport.counts()["messages"].
COUNTED_ROLES = frozenset({"user", "assistant"})

_CHUNK = 1 << 20  # 1 MiB: small enough to stop soon after a limit, large enough to be fast
_EOCD_SIGNATURE = b"PK\x05\x06"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_EOCD_MAX_SEARCH = 22 + 0xFFFF  # fixed record plus the longest possible archive comment
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


class ImportFormatError(ValueError):
    """The file cannot be imported; ``str(error)`` is one line a participant can read."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what an upload may make the parser do. Sizes are in bytes (1 MB = 10^6)."""

    max_upload_bytes: int = 200_000_000  # the uploaded zip or JSON file as received
    max_json_bytes: int = 500_000_000  # conversations.json once decompressed
    max_compression_ratio: int = 100  # uncompressed:compressed for conversations.json
    # Tiny members compress absurdly well (a run of spaces) yet cannot exhaust anything, so the
    # ratio is only judged once this many bytes have come out.
    compression_ratio_min_bytes: int = 1_000_000
    max_members: int = 10_000  # files in the archive (exports with images hold hundreds)
    max_conversations: int = 100_000
    max_nodes_per_conversation: int = 100_000
    max_tree_depth: int = 50_000  # longest root-to-leaf path in one conversation's tree


@dataclass(frozen=True)
class ParsedMessage:
    """One kept node of a conversation's message tree."""

    external_id: str  # the node id (the key in ``mapping``)
    parent_external_id: str | None  # nearest kept ancestor; None for the first message
    role: str  # user | assistant | system | tool (other values are passed through)
    text: str  # the text parts joined with newlines
    parts_meta: list[str]  # placeholders for non-text parts, e.g. "[image: image_asset_pointer]"
    content_type: str
    create_time: datetime | None  # aware UTC
    model_slug: str | None
    is_active_branch: bool  # on the path from current_node up to the root
    finish_reason: str | None  # metadata.finish_details.type
    fingerprint: str  # stable dedup key: conversation id + node id

    @property
    def is_counted(self) -> bool:
        """Whether this message counts in ``ParsedExport.counts()`` (see the counting rule)."""
        return self.role in COUNTED_ROLES and bool(self.text.strip())


@dataclass(frozen=True)
class ParsedConversation:
    """One conversation with its kept messages in tree order (parents before children)."""

    external_id: str  # ``conversation_id``, else ``id``
    title: str
    create_time: datetime | None
    update_time: datetime | None
    default_model_slug: str | None
    current_node: str | None  # raw ``current_node`` as exported (may be a skipped node)
    active_leaf_id: str | None  # nearest kept message at or above current_node
    has_custom_instructions: bool  # a user_editable_context / user system message was present
    messages: list[ParsedMessage]
    fingerprint: str  # stable dedup key: the conversation id

    @property
    def message_count(self) -> int:
        return sum(1 for m in self.messages if m.is_counted)


@dataclass(frozen=True)
class ParsedExport:
    """Everything usable in one export; conversations ordered by create_time (undated last)."""

    conversations: list[ParsedConversation]
    source: str  # "zip" or "json"
    member_name: str | None = None  # path of conversations.json inside the zip
    member_count: int = 0  # files in the archive (0 for a bare JSON upload)

    def counts(self) -> dict[str, int]:
        """The numbers the CLI prints: conversations, and counted messages on all branches."""
        return {
            "conversations": len(self.conversations),
            "messages": sum(c.message_count for c in self.conversations),
        }


def conversation_fingerprint(conversation_id: str) -> str:
    """SHA-256 hex of the conversation id: fixed length however long the id is."""
    return _sha256(FINGERPRINT_PREFIX, conversation_id)


def message_fingerprint(conversation_id: str, node_id: str) -> str:
    """SHA-256 hex of conversation id + node id (node ids are only unique per conversation)."""
    return _sha256(FINGERPRINT_PREFIX, conversation_id, node_id)


def parse_export(
    source: bytes | str | Path | BinaryIO, *, limits: Limits = Limits()
) -> ParsedExport:
    """Parse an export zip or a bare conversations.json.

    ``source`` is the file's bytes, a filesystem path (``str`` or ``Path``) or a seekable binary
    file object. Raises :class:`ImportFormatError` for anything that cannot be imported.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return _parse_stream(io.BytesIO(bytes(source)), limits)
    if isinstance(source, str | os.PathLike):
        try:
            with open(source, "rb") as fp:
                return _parse_stream(fp, limits)
        except OSError as exc:
            reason = exc.strerror or "unreadable"
            raise ImportFormatError(f"the file could not be read ({reason})") from exc
    return _parse_stream(source, limits)


# --- reading the upload ------------------------------------------------------------------------


def _parse_stream(fp: BinaryIO, limits: Limits) -> ParsedExport:
    if not _seekable(fp):
        # zipfile needs to seek; a bounded copy keeps the upload limit honest.
        data = fp.read(limits.max_upload_bytes + 1)
        _check_upload_size(len(data), limits)
        fp = io.BytesIO(data)
    fp.seek(0, io.SEEK_END)
    _check_upload_size(fp.tell(), limits)
    fp.seek(0)
    head = fp.read(64)
    fp.seek(0)
    if head[:4] in _ZIP_SIGNATURES:
        return _parse_zip(fp, limits)
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"[", b"{") or (head and not stripped):
        raw = fp.read(limits.max_json_bytes + 1)
        _check_json_size(len(raw), limits)
        return ParsedExport(conversations=_parse_json(raw, limits), source="json")
    if zipfile.is_zipfile(fp):  # e.g. a self-extracting archive with a stub in front
        fp.seek(0)
        return _parse_zip(fp, limits)
    raise ImportFormatError("the file is neither a ChatGPT export zip nor a conversations.json")


def _seekable(fp: BinaryIO) -> bool:
    try:
        return bool(fp.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _check_upload_size(size: int, limits: Limits) -> None:
    if size > limits.max_upload_bytes:
        raise ImportFormatError(
            f"the file is larger than the {_human_size(limits.max_upload_bytes)} upload limit"
        )


def _check_json_size(size: int, limits: Limits) -> None:
    if size > limits.max_json_bytes:
        raise ImportFormatError(
            f"{MEMBER_NAME} is larger than the {_human_size(limits.max_json_bytes)} limit"
        )


def _human_size(n: int) -> str:
    for unit, name in ((10**9, "GB"), (10**6, "MB"), (10**3, "KB")):
        if n >= unit:
            return f"{n / unit:g} {name}"
    return f"{n} bytes"


# --- the zip archive ---------------------------------------------------------------------------


def _parse_zip(fp: BinaryIO, limits: Limits) -> ParsedExport:
    # zipfile materialises one ZipInfo per central-directory entry before we can count them, so
    # the count the end record declares is checked first.
    declared = _declared_member_count(fp)
    if declared is not None and declared > limits.max_members:
        raise _too_many_members(limits)
    fp.seek(0)
    try:
        with zipfile.ZipFile(fp) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise _too_many_members(limits)
            info = _find_member(infos)
            raw = _read_member(zf, info, limits)
            member_count = len(infos)
    except ImportFormatError:
        raise
    except zipfile.BadZipFile as exc:
        raise ImportFormatError(f"the archive is damaged ({_one_line(str(exc))})") from exc
    except (zlib.error, EOFError, OSError, ValueError, struct.error) as exc:
        raise ImportFormatError("the archive is damaged (conversations.json is corrupt)") from exc
    except NotImplementedError as exc:
        raise ImportFormatError(
            "the archive uses a compression method that is not supported"
        ) from exc
    return ParsedExport(
        conversations=_parse_json(raw, limits),
        source="zip",
        member_name=info.filename,
        member_count=member_count,
    )


def _too_many_members(limits: Limits) -> ImportFormatError:
    return ImportFormatError(f"the archive has more than {limits.max_members} files")


def _declared_member_count(fp: BinaryIO) -> int | None:
    """Entry count from the end-of-central-directory record, or None if it cannot be read.

    Zip64 archives store 0xFFFF here and the real count elsewhere; those fall back to counting
    after zipfile has read the directory (still bounded by the upload size).
    """
    fp.seek(0, io.SEEK_END)
    size = fp.tell()
    tail_len = min(size, _EOCD_MAX_SEARCH)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    pos = tail.rfind(_EOCD_SIGNATURE)
    if pos < 0 or pos + 22 > len(tail):
        return None
    (total,) = struct.unpack("<H", tail[pos + 10 : pos + 12])
    return None if total == 0xFFFF else total


def _find_member(infos: list[zipfile.ZipInfo]) -> zipfile.ZipInfo:
    """The one conversations.json at the root, else the one exactly one directory deep."""
    root: list[zipfile.ZipInfo] = []
    nested: list[zipfile.ZipInfo] = []
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = name.split("/")
        # Nothing is extracted, but a traversal name means the archive was crafted: refuse it.
        if name.startswith("/") or _DRIVE_LETTER.match(name) or ".." in parts:
            raise ImportFormatError(
                f"the archive contains an unsafe file name ({_quote(info.filename)})"
            )
        if info.is_dir() or parts[-1] != MEMBER_NAME:
            continue
        if len(parts) == 1:
            root.append(info)
        elif len(parts) == 2 and parts[0]:
            nested.append(info)
    candidates = root or nested
    if not candidates:
        raise ImportFormatError(f"the archive has no {MEMBER_NAME}")
    if len(candidates) > 1:
        raise ImportFormatError(f"the archive has more than one {MEMBER_NAME}")
    info = candidates[0]
    if info.flag_bits & 0x1:
        raise ImportFormatError("the archive is encrypted; export it again without a password")
    return info


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> bytes:
    # The sizes in the header are claims; check them first (cheap) and then again while
    # streaming, where the actual bytes are counted.
    _check_ratio(info.file_size, info.compress_size, limits, measured=False)
    _check_json_size(info.file_size, limits)
    with zf.open(info) as stream:
        return _read_limited(stream, info.compress_size, limits)


def _read_limited(stream: BinaryIO, compressed_size: int, limits: Limits) -> bytes:
    """Read a decompressing stream in chunks, stopping as soon as a limit is passed."""
    chunks: list[bytes] = []
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
        _check_json_size(total, limits)
        _check_ratio(total, compressed_size, limits, measured=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_ratio(uncompressed: int, compressed: int, limits: Limits, *, measured: bool) -> None:
    if uncompressed < limits.compression_ratio_min_bytes:
        return
    ratio = uncompressed / max(compressed, 1)
    if ratio <= limits.max_compression_ratio:
        return
    # While streaming we stop just past the limit, so the true ratio is only known to exceed it.
    shown = f"over {limits.max_compression_ratio}:1" if measured else f"{ratio:.0f}:1"
    raise ImportFormatError(f"the archive looks like a zip bomb (compression ratio {shown})")


# --- conversations.json ------------------------------------------------------------------------


def _parse_json(raw: bytes, limits: Limits) -> list[ParsedConversation]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{MEMBER_NAME} is not UTF-8 text") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            f"{MEMBER_NAME} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise ImportFormatError(f"{MEMBER_NAME} is nested too deeply") from exc
    except ValueError as exc:  # the only other one: an integer too long to convert
        raise ImportFormatError(f"{MEMBER_NAME} has a number too long to read") from exc
    if not isinstance(doc, list):
        raise ImportFormatError(
            f"{MEMBER_NAME} should hold a list of conversations, not {_json_type(doc)}"
        )
    if len(doc) > limits.max_conversations:
        raise ImportFormatError(
            f"{MEMBER_NAME} has more than {limits.max_conversations} conversations"
        )
    conversations: list[ParsedConversation] = []
    seen: set[str] = set()
    for index, raw_conv in enumerate(doc, start=1):
        conv = _parse_conversation(index, raw_conv, limits)
        if conv.external_id in seen:
            raise ImportFormatError(
                f"conversation {index} repeats the id {_quote(conv.external_id)}"
            )
        seen.add(conv.external_id)
        conversations.append(conv)
    # sorted() is stable, so undated conversations keep their file order at the end.
    conversations.sort(key=lambda c: (c.create_time is None, c.create_time or _EPOCH))
    return conversations


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parse_conversation(index: int, raw: Any, limits: Limits) -> ParsedConversation:
    if not isinstance(raw, dict):
        raise ImportFormatError(f"conversation {index} is {_json_type(raw)}, not an object")
    conv_id = raw.get("conversation_id") or raw.get("id")
    if not isinstance(conv_id, str) or not conv_id.strip():
        raise ImportFormatError(f"conversation {index} has no id")
    conv_id = _clean(conv_id)
    where = f"conversation {index} ({_quote(conv_id)})"

    mapping = raw.get("mapping")
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ImportFormatError(f"{where}: mapping is {_json_type(mapping)}, not an object")
    if len(mapping) > limits.max_nodes_per_conversation:
        raise ImportFormatError(f"{where} has more than {limits.max_nodes_per_conversation} nodes")

    tree = _Tree.build(where, mapping, limits)
    current = raw.get("current_node")
    current = current if isinstance(current, str) else None
    active = tree.active_path(current)

    messages: list[ParsedMessage] = []
    has_custom_instructions = False
    # Nearest kept ancestor of each visited node, so skipped nodes don't break parent links.
    kept_above: dict[str, str | None] = {}
    for node_id, parent_id in tree.walk():
        inherited = kept_above[parent_id] if parent_id is not None else None
        node = mapping[node_id]
        outcome = _parse_node(where, conv_id, node_id, node, inherited, node_id in active)
        if outcome is _CUSTOM_INSTRUCTIONS:
            has_custom_instructions = True
            kept_above[node_id] = inherited
        elif isinstance(outcome, ParsedMessage):
            messages.append(outcome)
            kept_above[node_id] = node_id
        else:
            kept_above[node_id] = inherited

    active_leaf = None
    if current is not None and current in kept_above:
        active_leaf = kept_above[current]
    elif active:
        active_leaf = kept_above.get(tree.leaf_of(active))

    title = raw.get("title")
    model = raw.get("default_model_slug")
    return ParsedConversation(
        external_id=conv_id,
        title=_clean(title) if isinstance(title, str) else "",
        create_time=_timestamp(raw.get("create_time")),
        update_time=_timestamp(raw.get("update_time")),
        default_model_slug=_clean(model) if isinstance(model, str) else None,
        current_node=_clean(current) if current is not None else None,
        active_leaf_id=active_leaf,
        has_custom_instructions=has_custom_instructions,
        messages=messages,
        fingerprint=conversation_fingerprint(conv_id),
    )


@dataclass
class _Tree:
    """Parent/child structure of one mapping, validated to be a finite forest."""

    children: dict[str | None, list[str]] = field(default_factory=dict)
    parent: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def build(cls, where: str, mapping: dict[str, Any], limits: Limits) -> _Tree:
        tree = cls()
        listed_order: dict[str, dict[str, int]] = {}
        for node_id, node in mapping.items():
            if not isinstance(node, dict):
                raise ImportFormatError(
                    f"{where}: node {_quote(node_id)} is {_json_type(node)}, not an object"
                )
            parent = node.get("parent")
            if parent is not None and not isinstance(parent, str):
                raise ImportFormatError(
                    f"{where}: node {_quote(node_id)} has a parent that is not a string"
                )
            if parent is not None and parent not in mapping:
                raise ImportFormatError(
                    f"{where}: node {_quote(node_id)} points to a missing parent {_quote(parent)}"
                )
            if _clean(node_id) != node_id or not node_id:
                # Ids are stored and used as dedup keys; altering one could merge two nodes.
                raise ImportFormatError(f"{where}: node {_quote(node_id)} has an unusable id")
            children = node.get("children", [])
            if children is None:
                children = []
            if not isinstance(children, list):
                raise ImportFormatError(
                    f"{where}: node {_quote(node_id)} has children that are not a list"
                )
            listed_order[node_id] = {c: i for i, c in enumerate(children) if isinstance(c, str)}
            tree.parent[node_id] = parent
            tree.children.setdefault(parent, []).append(node_id)
        # The parent pointers define the tree; the children lists only order siblings (the order
        # ChatGPT shows branches in). Siblings a children list forgets go last, in mapping order.
        for parent_id, kids in tree.children.items():
            order = listed_order.get(parent_id, {}) if parent_id is not None else {}
            kids.sort(key=lambda c, order=order: order.get(c, len(order)))
        tree._check_reachable(where, mapping, limits)
        return tree

    def _check_reachable(self, where: str, mapping: dict[str, Any], limits: Limits) -> None:
        # Every node whose parent chain ends at a root is reached from the roots; with no
        # dangling parents left, anything unreached sits on (or below) a parent loop.
        seen = 0
        for _node_id, depth in self._walk_with_depth():
            seen += 1
            if depth > limits.max_tree_depth:
                raise ImportFormatError(
                    f"{where}: the message tree is deeper than {limits.max_tree_depth} levels"
                )
        if seen != len(mapping):
            reached = {node_id for node_id, _ in self.walk()}
            node: str | None = next(n for n in mapping if n not in reached)
            # Follow parents from an unreached node until one repeats: that one is on the loop.
            chain: set[str | None] = set()
            while node not in chain:
                chain.add(node)
                node = self.parent[node]  # type: ignore[index]
            raise ImportFormatError(
                f"{where}: the message tree has a cycle at node {_quote(str(node))}"
            )

    def _walk_with_depth(self) -> Iterator[tuple[str, int]]:
        stack = [(root, 1) for root in reversed(self.children.get(None, []))]
        while stack:
            node_id, depth = stack.pop()
            yield node_id, depth
            stack.extend((c, depth + 1) for c in reversed(self.children.get(node_id, [])))

    def walk(self) -> Iterator[tuple[str, str | None]]:
        """(node id, parent id) in pre-order: parents before children, siblings in order."""
        for node_id, _depth in self._walk_with_depth():
            yield node_id, self.parent[node_id]

    def active_path(self, current: str | None) -> set[str]:
        """Node ids from current_node up to its root.

        Without a usable current_node, fall back to the branch ChatGPT shows by default: the
        last child at every step from the first root.
        """
        path: set[str] = set()
        if current is not None and current in self.parent:
            node: str | None = current
            while node is not None:  # the tree was checked to be acyclic, so this ends
                path.add(node)
                node = self.parent[node]
            return path
        roots = self.children.get(None, [])
        node = roots[0] if roots else None
        while node is not None:
            path.add(node)
            kids = self.children.get(node)
            node = kids[-1] if kids else None
        return path

    def leaf_of(self, path: set[str]) -> str:
        """The deepest node of a root-to-leaf path."""
        return next(n for n in path if not any(c in path for c in self.children.get(n, [])))


_CUSTOM_INSTRUCTIONS = object()  # sentinel: the node held custom instructions, not a message


def _parse_node(
    where: str,
    conv_id: str,
    node_id: str,
    node: dict[str, Any],
    parent_kept: str | None,
    is_active: bool,
) -> ParsedMessage | object | None:
    """A ParsedMessage, the custom-instructions sentinel, or None for a node that is skipped."""
    message = node.get("message")
    if message is None:
        return None
    label = f"{where}: node {_quote(node_id)}"
    if not isinstance(message, dict):
        raise ImportFormatError(f"{label} has a message that is {_json_type(message)}")
    if not message:
        return None
    metadata = message.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    content = message.get("content")
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise ImportFormatError(f"{label} has content that is {_json_type(content)}")
    content_type = content.get("content_type")
    content_type = _clean(content_type) if isinstance(content_type, str) else "unknown"

    # Custom instructions are the participant's profile text, not part of the conversation.
    if content_type == "user_editable_context" or metadata.get("is_user_system_message") is True:
        return _CUSTOM_INSTRUCTIONS
    if metadata.get("is_visually_hidden_from_conversation") is True:
        return None

    author = message.get("author")
    if author is None:
        author = {}
    if not isinstance(author, dict):
        raise ImportFormatError(f"{label} has an author that is {_json_type(author)}")
    role = author.get("role")
    role = _clean(role) if isinstance(role, str) and role else "unknown"

    text, parts_meta = _content_text(label, content_type, content)
    if not text.strip() and not parts_meta:
        return None  # an empty node (e.g. the blank system root): nothing to show or count

    finish = metadata.get("finish_details")
    finish_reason = finish.get("type") if isinstance(finish, dict) else None
    model_slug = metadata.get("model_slug")
    return ParsedMessage(
        external_id=_clean(node_id),
        parent_external_id=parent_kept,
        role=role,
        text=text,
        parts_meta=parts_meta,
        content_type=content_type,
        create_time=_timestamp(message.get("create_time")),
        model_slug=_clean(model_slug) if isinstance(model_slug, str) else None,
        is_active_branch=is_active,
        finish_reason=_clean(finish_reason) if isinstance(finish_reason, str) else None,
        fingerprint=message_fingerprint(conv_id, node_id),
    )


# Content types whose text lives in a named field instead of ``parts``.
_TEXT_FIELDS = {
    "code": "text",
    "execution_output": "text",
    "tether_quote": "text",
    "system_error": "text",
    "tether_browsing_display": "result",
    "reasoning_recap": "content",
}


def _content_text(label: str, content_type: str, content: dict[str, Any]) -> tuple[str, list[str]]:
    """(text, placeholders) for one message's content; unknown shapes become placeholders."""
    field_name = _TEXT_FIELDS.get(content_type)
    if field_name is not None:
        value = content.get(field_name)
        return (_clean(value), []) if isinstance(value, str) else ("", [f"[{content_type}]"])
    if "parts" in content:
        parts = content["parts"]
        if parts is None:
            parts = []
        if not isinstance(parts, list):
            raise ImportFormatError(f"{label} has parts that are not a list")
        return _parts_text(parts)
    value = content.get("text")
    if isinstance(value, str):
        return _clean(value), []
    return "", [f"[{content_type}]"]


def _parts_text(parts: list[Any]) -> tuple[str, list[str]]:
    texts: list[str] = []
    meta: list[str] = []
    for part in parts:
        if isinstance(part, str):
            if part:
                texts.append(_clean(part))
        elif isinstance(part, dict):
            kind = part.get("content_type")
            kind = _clean(kind) if isinstance(kind, str) and kind else "unknown"
            # Voice conversations carry the words as a transcription part: that is text.
            if kind == "audio_transcription" and isinstance(part.get("text"), str):
                if part["text"]:
                    texts.append(_clean(part["text"]))
                continue
            meta.append(f"[{_asset_kind(kind)}: {kind}]")
        elif part is not None:
            meta.append(f"[part: {_json_type(part)}]")
    return "\n".join(texts), meta


def _asset_kind(content_type: str) -> str:
    for kind in ("image", "audio", "video"):
        if kind in content_type:
            return kind
    return "file" if "asset" in content_type or "file" in content_type else "part"


# --- small helpers -----------------------------------------------------------------------------


def _timestamp(value: Any) -> datetime | None:
    """Unix seconds to an aware UTC datetime; anything unusable (null, NaN, 1e300) is None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _clean(value: str) -> str:
    """Text safe to store: no NUL (PostgreSQL rejects it), no lone surrogates (not UTF-8)."""
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _quote(value: str, limit: int = 60) -> str:
    """A short, single-line rendering of an untrusted string for an error message."""
    shown = value if len(value) <= limit else value[:limit] + "…"
    return repr(shown)


def _one_line(message: str) -> str:
    return " ".join(message.split())[:200]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _sha256(*parts: str) -> str:
    # Length-prefixing each part keeps ("a", "bc") and ("ab", "c") apart whatever ids contain.
    joined = "".join(f"{len(part)}:{part}" for part in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()
