"""The client's IP address, believing forwarding headers only from trusted proxies."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from collector.request import IngestRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


class ClientAddress:
    def __init__(self, trusted_proxies: str) -> None:
        self.trusted = parse_networks(trusted_proxies)

    @lru_cache(maxsize=4096)  # noqa: B019 -- one instance per application, living as long as it
    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def of(self, request: IngestRequest) -> str | None:
        """The peer address; when the peer is a trusted proxy, the right-most untrusted address of
        ``X-Forwarded-For``, else ``X-Real-IP``."""
        peer = request.peer
        if not peer or not self.trusted or not self.is_trusted(peer):
            return peer
        forwarded = [a.strip() for a in request.headers.get("x-forwarded-for", "").split(",") if a.strip()]
        for address in reversed(forwarded):
            if not self.is_trusted(address):
                return address if _valid(address) else peer
        real = request.headers.get("x-real-ip", "").strip()
        return real if real and _valid(real) else peer


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False
