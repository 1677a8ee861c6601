"""Which provider serves an arm: get_provider(kind, config) and the list of valid kinds.

Providers hold pooled HTTP clients, so the registry hands out one instance per (kind, config)
and reuses it; a config holds no secrets (see config.py), so it is a safe cache key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .anthropic_provider import AnthropicProvider
from .base import Provider
from .config import ProviderConfig
from .openai_compat import OpenAICompatProvider
from .simulated import SimulatedProvider

__all__ = ["ProviderConfig", "available_kinds", "get_provider"]

_FACTORIES: dict[str, Callable[[ProviderConfig], Provider]] = {
    "openai": OpenAICompatProvider,
    "anthropic": AnthropicProvider,
    "simulated": SimulatedProvider,
}
# Alternative spellings accepted in protocols, mapped to the canonical kind.
_ALIASES = {"openai_compatible": "openai"}

_cache: dict[tuple[str, ProviderConfig], Provider] = {}
_lock = threading.Lock()


def available_kinds() -> list[str]:
    """Every kind get_provider accepts, aliases included, sorted."""
    return sorted([*_FACTORIES, *_ALIASES])


def canonical_kind(kind: str) -> str:
    """The canonical kind for `kind` (resolving aliases); ValueError listing valid kinds."""
    name = _ALIASES.get(kind, kind)
    if name not in _FACTORIES:
        raise ValueError(
            f"unknown provider kind {kind!r}; valid kinds: {', '.join(available_kinds())}"
        )
    return name


def get_provider(kind: str, config: ProviderConfig | None = None) -> Provider:
    """The provider for `kind` configured by `config` (shared per kind and config)."""
    name = canonical_kind(kind)
    config = config or ProviderConfig()
    with _lock:
        provider = _cache.get((name, config))
        if provider is None:
            provider = _FACTORIES[name](config)
            _cache[(name, config)] = provider
        return provider
