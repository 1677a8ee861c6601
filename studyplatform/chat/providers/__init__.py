"""Model providers for the chat app: plain async Python, no Django.

The chat code needs only what is re-exported here; see docs/providers.md.
"""

from .base import (
    FINISH_REASONS,
    ChatRequest,
    Provider,
    ProviderError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Timeouts,
    collect,
    estimate_tokens,
)
from .config import ProviderConfig
from .registry import available_kinds, get_provider
from .retry import stream_with_retry

__all__ = [
    "FINISH_REASONS",
    "ChatRequest",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "StreamEnd",
    "StreamEvent",
    "TextDelta",
    "Timeouts",
    "available_kinds",
    "collect",
    "estimate_tokens",
    "get_provider",
    "stream_with_retry",
]
