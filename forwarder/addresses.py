"""Where a destination may connect: public addresses only, unless ``forward_private_networks``.

A destination's URL is given by whoever administers a project. Without this check, a webhook pointing at
``http://169.254.169.254/`` (a cloud's metadata service), ``http://127.0.0.1:8123/`` (ClickHouse's
HTTP port) or any address inside the private network would make the forwarder a proxy into it.

The HTTP destinations check in their client's resolver (:class:`forwarder.http.PublicResolver`), which
gives the connection the addresses it checked, so DNS rebinding gets nowhere. The Kafka destination and
an S3 lake check with :func:`resolve` before their clients connect; those clients resolve the name
again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket


class AddressRefused(OSError):
    """The destination's host is, or resolves to, an address that is not public (an ``OSError``, as a
    resolver's failures are, so HTTP clients pass it on as the cause of the failed connection)."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int, allow_private: bool) -> str:
    """An address of ``host`` to connect to; raises :class:`AddressRefused` when any address it
    resolves to is not public (and private ones are not allowed), ``OSError`` when it does not
    resolve."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise OSError(f"{host} does not resolve")
    if not allow_private:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise AddressRefused(f"{host} resolves to {refused[0]}, which is not a public address "
                                 "(forward_private_networks is off)")
    return addresses[0]
