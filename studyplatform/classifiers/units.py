"""What a judge reads: the units of a conversation for each classifier scope.

Pure Python (no Django). A conversation is a tree of messages (a participant can regenerate or
edit, which starts a branch), so context is always the chain of ancestors of the target, never
"the messages before it by time": an exchange is an assistant reply and the user message it
answers; a window is the target user message and the turns on its own branch before it; a
whole conversation is the branch that ends at the conversation's active leaf.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A whole conversation can be long; the judge reads its most recent part up to this size, and
# the excerpt says that earlier turns were left out.
MAX_CONVERSATION_CHARS = 24_000


@dataclass(frozen=True)
class Turn:
    id: int
    parent_id: int | None
    role: str  # "user" | "assistant"
    text: str


@dataclass(frozen=True)
class Unit:
    """One target of one classifier: the turns the judge reads and where the label goes."""

    target_key: str
    conversation_id: int
    message_id: int | None
    turns: tuple[tuple[str, str], ...]  # (role, text), oldest first; the target is last


def _chain(turn: Turn, by_id: dict[int, Turn], limit: int) -> list[Turn]:
    chain = [turn]
    while len(chain) < limit and chain[-1].parent_id in by_id:
        chain.append(by_id[chain[-1].parent_id])
    return list(reversed(chain))


def units_for(
    scope: str,
    conversation_id: int,
    turns: Sequence[Turn],
    *,
    window_turns: int | None = None,
    active_leaf_id: int | None = None,
) -> list[Unit]:
    """The units of one conversation for `scope`, in message order. `turns` holds the
    conversation's labellable messages (user and finished assistant replies, with text)."""
    by_id = {t.id: t for t in turns}
    if scope == "user_message":
        return [_unit(conversation_id, t, [t]) for t in turns if t.role == "user"]
    if scope == "assistant_message":
        return [_unit(conversation_id, t, [t]) for t in turns if t.role == "assistant"]
    if scope == "exchange":
        out = []
        for t in turns:
            parent = by_id.get(t.parent_id) if t.parent_id is not None else None
            if t.role == "assistant" and parent is not None and parent.role == "user":
                out.append(_unit(conversation_id, t, [parent, t]))
        return out
    if scope == "window":
        size = window_turns or 2
        return [
            _unit(conversation_id, t, _chain(t, by_id, size)) for t in turns if t.role == "user"
        ]
    if scope == "conversation":
        if not turns:
            return []
        leaf = by_id.get(active_leaf_id) if active_leaf_id is not None else None
        branch = _chain(leaf or turns[-1], by_id, len(turns))
        kept: list[Turn] = []
        size = 0
        for t in reversed(branch):
            size += len(t.text)
            if kept and size > MAX_CONVERSATION_CHARS:
                break
            kept.append(t)
        kept.reverse()
        return [
            Unit(
                target_key=f"c:{conversation_id}",
                conversation_id=conversation_id,
                message_id=None,
                turns=tuple((t.role, t.text) for t in kept),
            )
        ]
    raise ValueError(f"unknown scope {scope!r}")


def _unit(conversation_id: int, target: Turn, chain: Iterable[Turn]) -> Unit:
    return Unit(
        target_key=f"m:{target.id}",
        conversation_id=conversation_id,
        message_id=target.id,
        turns=tuple((t.role, t.text) for t in chain),
    )


def count_units(
    scope: str, *, user: int, assistant: int, exchanges: int, conversations: int
) -> int:
    """How many units a scope yields from message counts (for a run's progress total)."""
    return {
        "user_message": user,
        "assistant_message": assistant,
        "exchange": exchanges,
        "window": user,
        "conversation": conversations,
    }[scope]
