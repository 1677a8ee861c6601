"""Provider configuration: reading an arm's API key from the environment at call time.

ProviderConfig, the rule for which variables may hold a key and the key reading itself live in
studyplatform/core/provider_config.py (the endpoint registry in core and the safety app's
moderation client need them too); this module turns a missing key into the ProviderError the
chat providers report.

API keys never appear in a config, a protocol version or the database: a config only *names*
an environment variable (api_key_env), and the key is read from the environment each time a
request is made, so rotating a key needs no change to a study protocol.
"""

from __future__ import annotations

from studyplatform.core.provider_config import ApiKeyUnavailable, ProviderConfig, api_key_read

from .base import ProviderError


def resolve_api_key(config: ProviderConfig, kind: str) -> str:
    """Read the API key from the environment now (never cached in the config).

    Raises a non-transient ProviderError naming the variable when it is unset and required.
    """
    try:
        return api_key_read(config, kind)
    except ApiKeyUnavailable as exc:
        raise ProviderError(str(exc), transient=False) from None
