"""The address of the client behind a request, trusting forwarding headers only from proxies the
operator named.

Rate limits and login throttling key on the client address. A forwarding header
(`X-Forwarded-For`) is written by whoever sends the request, so it means something only when the
hop that added it is one of our own proxies: `TRUSTED_PROXIES` (IP addresses or CIDR networks).
With none configured, the address is the socket's peer and the header is ignored.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry)


def _is_trusted(address: str, networks: tuple[_Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: HttpRequest) -> str:
    """The first address, walking back from the socket peer, that is not a trusted proxy.

    Each trusted proxy appends the address it received the request from, so the rightmost
    untrusted entry of X-Forwarded-For is the real client; entries further left were written
    by the client itself and are never believed.
    """
    peer = request.META.get("REMOTE_ADDR", "") or ""
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _is_trusted(peer, networks):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()][-32:]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed hop: fall back to what we know
    return peer


def peer_is_trusted_proxy(request: HttpRequest) -> bool:
    """Whether the socket peer is one of TRUSTED_PROXIES (False when none are configured)."""
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    return bool(networks) and _is_trusted(request.META.get("REMOTE_ADDR", "") or "", networks)
