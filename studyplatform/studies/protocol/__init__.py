"""The protocol format (studyplatform/v1): parsing with line numbers, validation, export, diff."""

from .document import content_hash, diff_documents, to_yaml
from .validate import (
    ProtocolError,
    ProtocolInvalid,
    ProtocolRefused,
    parse_protocol_data,
    parse_protocol_text,
    validate_document,
)

__all__ = [
    "ProtocolError",
    "ProtocolInvalid",
    "ProtocolRefused",
    "content_hash",
    "diff_documents",
    "parse_protocol_data",
    "parse_protocol_text",
    "to_yaml",
    "validate_document",
]
