"""Parsers that turn chat histories exported from other apps into plain dataclasses.

Parsers here are pure Python (no Django imports): they read untrusted files, validate them
against explicit limits and return data the chat services can store. See
``docs/chatgpt_import.md`` for the ChatGPT "Export data" format.
"""

from studyplatform.chat.importers.chatgpt import (
    ImportFormatError,
    Limits,
    ParsedConversation,
    ParsedExport,
    ParsedMessage,
    conversation_fingerprint,
    message_fingerprint,
    parse_export,
)

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
