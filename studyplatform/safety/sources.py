"""How the safety app reads chat messages without importing chat.

Safety sits below chat in the layer order (tests/core/test_import_layers.py): chat calls its
services to screen a message and raise an alert, so safety may not import chat's models. Where
safety needs stored messages (the moderation task, retrying an alert that failed to be raised,
the review timeline around an alert) it asks the message source that chat registers in
``ChatConfig.ready()``. Surveys register their own alert resolver the same way
(``services.alert_source_register``).

``SafetyAlert.message`` stays a foreign key to ``chat.Message`` named by string, which is not an
import; the objects the source returns are chat messages, used here only through their fields
(``pk``, ``participant``, ``content``, ``created_at``, ...).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MessageSource:
    """What safety reads from chat.

    participant_message: the stored participant (user-role) message with this id, with its
        participant and study loaded, or None when there is none (deleted at withdrawal).
    messages_between: a participant's messages (every role) created from `start` to `end`
        inclusive, oldest first.
    """

    participant_message: Callable[[int], Any | None]
    messages_between: Callable[[int, dt.datetime, dt.datetime], Iterable[Any]]


_source: MessageSource | None = None


def message_source_register(source: MessageSource) -> None:
    """Called once from ``ChatConfig.ready()`` (registering again replaces it)."""
    global _source
    _source = source


def message_source() -> MessageSource:
    if _source is None:
        # Only possible if the chat app is not installed or its ready() has not run.
        raise RuntimeError("no chat message source registered (is studyplatform.chat installed?)")
    return _source
