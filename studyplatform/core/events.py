"""The platform's one event registry: how a lower app tells higher apps that something happened.

Apps are layered (see tests/core/test_import_layers.py): participants may not import surveys,
studies may not import surveys, and so on. When a lower app's service must let a higher app act
(enrollment creates the survey schedule, withdrawal with deletion removes chat messages and
survey responses), the service publishes one of the event types below and the higher app
subscribes a handler to it. Everything else is a direct call.

Rules, so that what an event reaches stays readable in one place:
- Subscriptions are made explicitly in each app's ``AppConfig.ready()``, never as an import side
  effect, so they do not depend on which module happened to be imported first. Handlers run in
  subscription order, which is INSTALLED_APPS order.
- ``publish`` calls the handlers synchronously, in the caller's transaction: a handler that
  raises rolls the publishing service back. A handler that must act only after the commit
  (sending email, enqueueing a task) uses ``transaction.on_commit`` itself, or the service
  publishes from ``on_commit`` (``ProtocolChanged``).
- Some events collect an answer from every handler (``ParticipantContentDeletion`` returns the
  counts of what each app deleted, ``ParticipantDownloadRequested`` the tables each app adds,
  ``ParticipantDownloadFilesRequested`` the files);
  ``publish`` returns the handlers' results in order.
- No Django signals: a signal's receivers are found by import side effect, which is what this
  module replaces.

``tests/core/test_events.py`` checks that every event type has the subscribers the platform
needs, with real data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

E = TypeVar("E")


# -- event types ------------------------------------------------------------------------------
# Fields hold model instances (typed Any so this module imports no domain app).


@dataclass(frozen=True)
class ParticipantEnrolled:
    """A participant consented and was allocated; published inside the enrollment transaction.
    Surveys create the participant's schedule."""

    participant: Any


@dataclass(frozen=True)
class ParticipantTimezoneChanged:
    """The participant's time zone changed; published inside that transaction. Surveys
    reschedule future occurrences in the new zone."""

    participant: Any


@dataclass(frozen=True)
class ParticipantWithdrew:
    """Any withdrawal (keep or delete); published inside the withdrawal transaction, after the
    participant row is marked withdrawn and before content is deleted. Surveys cancel pending
    invitations."""

    participant: Any
    mode: str


@dataclass(frozen=True)
class ParticipantContentDeletion:
    """Withdrawal with deletion: each app holding the participant's content deletes it inside
    the withdrawal transaction and returns ``{what: count}`` for the audit event."""

    participant: Any


@dataclass(frozen=True)
class ParticipantDownloadRequested:
    """A "download my data" archive is being built: each app holding participant data returns
    ``{table name: list of row dicts}`` to add to it."""

    participant: Any


@dataclass(frozen=True)
class ParticipantDownloadFilesRequested:
    """A "download my data" archive is being built: each app holding files of the participant
    (kept voice recordings) returns ``{path inside the archive: reader}``, where the reader is a
    zero-argument callable giving the file's clear bytes. The archive reads one file at a time,
    so an app never has to hold all of them."""

    participant: Any


@dataclass(frozen=True)
class ParticipantHomeRequested:
    """The participant's home page is being rendered: each app returns ``{name: value}`` to add
    to the page's template context (surveys: ``due``, the questionnaires open now)."""

    participant: Any


@dataclass(frozen=True)
class MessageStored:
    """A participant's chat message was stored (not published for a replayed request).
    Surveys evaluate their "after N messages" rules and log the first message after the day's
    conversation task was shown (``message``: the stored Message)."""

    participant: Any
    message: Any = None
    # The study's current protocol version, read by the statement that stored the message
    # (None: not read; a subscriber that needs it reads it from the database).
    current_version_id: int | None = None


@dataclass(frozen=True)
class ParticipantChatRequested:
    """A participant chat page (conversation list or a conversation) is being rendered: each
    app returns ``{name: value}`` to add to the page's template context (surveys: ``task``,
    today's conversation task)."""

    participant: Any


@dataclass(frozen=True)
class ProtocolChanged:
    """A new protocol version committed; published from ``transaction.on_commit``. Surveys
    resynchronise every participant's schedule."""

    study: Any
    version: Any


EVENT_TYPES: tuple[type, ...] = (
    ParticipantEnrolled,
    ParticipantTimezoneChanged,
    ParticipantWithdrew,
    ParticipantContentDeletion,
    ParticipantDownloadRequested,
    ParticipantDownloadFilesRequested,
    ParticipantHomeRequested,
    MessageStored,
    ProtocolChanged,
    ParticipantChatRequested,
)

# -- registry ---------------------------------------------------------------------------------

_subscribers: dict[type, list[Callable[[Any], Any]]] = defaultdict(list)


def subscribe(event_type: type[E], handler: Callable[[E], Any]) -> None:
    """Call ``handler(event)`` on every ``publish`` of an ``event_type``.

    Subscribing the same handler twice is a no-op, so a ``ready()`` that Django runs again (in
    some test runners) does not make a handler run twice.
    """
    if event_type not in EVENT_TYPES:
        raise TypeError(f"{event_type!r} is not an event type declared in core.events")
    handlers = _subscribers[event_type]
    if handler not in handlers:
        handlers.append(handler)


def publish(event: object) -> list[Any]:
    """Call every handler subscribed to ``type(event)``, in order; return their results."""
    if type(event) not in EVENT_TYPES:
        raise TypeError(f"{type(event)!r} is not an event type declared in core.events")
    return [handler(event) for handler in list(_subscribers[type(event)])]


def subscribers(event_type: type) -> list[Callable[[Any], Any]]:
    """The handlers subscribed to ``event_type``, in call order (for tests and debugging)."""
    return list(_subscribers[event_type])
