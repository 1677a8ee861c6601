"""Read queries for the researcher side of chat: the message log and per-arm statistics (the
safety-alert queue is in the safety app). Every query is scoped to one study and free of N+1
lookups.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import Count, QuerySet

from studyplatform.studies.models import Study

from .models import Conversation, Message

# Reply statuses a finished assistant message can have; "pending"/"streaming" are in flight.
FINAL_STATUSES = ("complete", "length", "cancelled", "error", "filtered")


# --- message log -----------------------------------------------------------------------------


def participant_message(message_id: int) -> Message | None:
    """A stored participant (user-role) message with its participant and study, or None.
    The safety app reads it through its message source (moderation, alert retries)."""
    return (
        Message.objects.select_related("participant__study")
        .filter(pk=message_id, role=Message.Role.USER)
        .first()
    )


def participant_messages_between(
    participant_id: int, start: dt.datetime, end: dt.datetime
) -> QuerySet[Message]:
    """A participant's messages created from `start` to `end` inclusive, oldest first (the
    safety review timeline around an alert)."""
    return Message.objects.filter(
        participant_id=participant_id, created_at__gte=start, created_at__lte=end
    ).order_by("created_at", "id")


def conversations_for_study(
    study: Study, *, participant_code: str = "", imported: str = ""
) -> QuerySet[Conversation]:
    """Conversations of the study's participants with a message count (one query)."""
    qs = (
        Conversation.objects.filter(participant__study=study)
        .select_related("participant", "arm")
        .annotate(message_count=Count("messages"))
        .order_by("-updated_at", "-id")
    )
    if participant_code:
        qs = qs.filter(participant__code=participant_code)
    if imported in ("0", "1"):
        qs = qs.filter(imported=imported == "1")
    return qs


def conversation_messages(conversation: Conversation) -> list[Message]:
    """Every message of the conversation, all branches, oldest first (one query)."""
    return list(Message.objects.filter(conversation=conversation).order_by("created_at", "id"))


def active_branch_ids(conversation: Conversation, messages: Sequence[Message]) -> set[int]:
    """Ids on the path from the root to the leaf the participant sees.

    Without a recorded active leaf (imported or interrupted conversations) the newest message's
    path is taken, which is what the participant's page would show.
    """
    by_id = {m.pk: m for m in messages}
    leaf_id = conversation.active_leaf_id
    if leaf_id not in by_id:
        leaf_id = messages[-1].pk if messages else None
    path: set[int] = set()
    while leaf_id is not None and leaf_id not in path:  # guards against a corrupt cycle
        path.add(leaf_id)
        parent = by_id.get(leaf_id)
        leaf_id = parent.parent_id if parent is not None else None
    return path


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default), q in [0, 1]; None for no values.

    Computed in Python rather than with a database percentile so the numbers are the same on
    SQLite (development, tests) and PostgreSQL.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def _round(value: float | None) -> float | None:
    # A tenth of a millisecond is finer than any latency measured here; rounding hides float
    # noise such as 954.9999999999999 for 955.
    return round(value, 1) if value is not None else None


@dataclass
class ChatStats:
    """Counts for one arm (or the study total). Plain data, serialised with `as_dict`."""

    conversations: int = 0
    user_messages: int = 0
    assistant_replies: int = 0
    replies_by_status: Counter = field(default_factory=Counter)
    latencies: list[int] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    models: Counter = field(default_factory=Counter)
    fingerprints: Counter = field(default_factory=Counter)

    def add_message(self, row: dict) -> None:
        if row["role"] == Message.Role.USER:
            self.user_messages += 1
            return
        if row["role"] != Message.Role.ASSISTANT:
            return
        self.assistant_replies += 1
        self.replies_by_status[row["status"]] += 1
        if row["latency_ms"] is not None:
            self.latencies.append(row["latency_ms"])
        self.tokens_in += row["prompt_tokens"] or 0
        self.tokens_out += row["completion_tokens"] or 0
        if row["model_reported"]:
            self.models[row["model_reported"]] += 1
        if row["system_fingerprint"]:
            self.fingerprints[row["system_fingerprint"]] += 1

    def as_dict(self, *, by_model: bool = True) -> dict:
        """`by_model=False` leaves out the models and fingerprints seen: counted per model they
        give each arm's reply count away (one model per arm), so only roles that see
        allocation get them."""
        finished = sum(self.replies_by_status[s] for s in FINAL_STATUSES)
        out = {
            "conversations": self.conversations,
            "user_messages": self.user_messages,
            "assistant_replies": self.assistant_replies,
            "replies_by_status": {s: self.replies_by_status[s] for s in FINAL_STATUSES},
            # Errors over finished replies: replies still streaming have not failed (yet).
            "error_rate": (self.replies_by_status["error"] / finished) if finished else None,
            "latency_ms_p50": _round(percentile(self.latencies, 0.50)),
            "latency_ms_p95": _round(percentile(self.latencies, 0.95)),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
        }
        if by_model:
            out["models_reported"] = dict(self.models.most_common())
            out["system_fingerprints"] = dict(self.fingerprints.most_common())
        return out


def chat_stats(study: Study, *, since: dt.datetime | None = None) -> dict[str, ChatStats]:
    """Per-arm chat statistics keyed by arm key, plus "_total". Imported history is excluded:
    it was not produced by the study's arms.

    Two queries; the message rows are aggregated in Python (values only, no decryption) so
    percentiles work on every database.
    """
    conversations = Conversation.objects.filter(participant__study=study, imported=False)
    messages = Message.objects.filter(
        conversation__participant__study=study, imported=False, conversation__imported=False
    )
    if since is not None:
        conversations = conversations.filter(created_at__gte=since)
        messages = messages.filter(created_at__gte=since)
    arms: dict[str, ChatStats] = {
        key: ChatStats() for key in study.arms.values_list("key", flat=True)
    }
    total = ChatStats()
    for row in conversations.values("arm__key").annotate(n=Count("id")):
        arms.setdefault(row["arm__key"], ChatStats()).conversations += row["n"]
        total.conversations += row["n"]
    rows = messages.values(
        "conversation__arm__key",
        "role",
        "status",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "model_reported",
        "system_fingerprint",
    )
    for row in rows.iterator(chunk_size=2000):
        arms.setdefault(row["conversation__arm__key"], ChatStats()).add_message(row)
        total.add_message(row)
    return {**arms, "_total": total}
