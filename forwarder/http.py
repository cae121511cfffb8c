"""HTTP delivery shared by the webhook and Segment destinations: one POST, to a checked address.

The client is aiohttp's (about a fifth of httpx's CPU a request: docs/performance.md). Its connector
resolves each host through :class:`PublicResolver`, which refuses an address that is not public
(:mod:`forwarder.addresses`) and hands the connector the addresses it checked, so the connection goes
to a checked address and TLS still checks the certificate against the name; a URL whose host is an
address is checked before the request. Redirects are not followed: a 3xx is refused like any other
status that is not 2xx, 408, 429 or 5xx. At most 4 KB of an answer's body is read.
"""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from forwarder.addresses import AddressRefused, is_public
from forwarder.outcomes import Outcome, Refused, Retry, http_outcome
from headwater.settings import Settings

MAX_ANSWER_BYTES = 4096
SCHEMES = ("http", "https")


def check_url(url: object, name: str = "url") -> list[str]:
    """The problems of a destination's URL setting."""
    if not isinstance(url, str) or not url:
        return [f"{name}: an http or https URL"]
    try:
        parsed = URL(url)
    except ValueError as exc:
        return [f"{name}: {exc}"]
    if parsed.scheme not in SCHEMES or not parsed.host:
        return [f"{name}: an http or https URL with a host"]
    if parsed.user or parsed.password:
        return [f"{name}: no user or password in the URL (use the destination's settings)"]
    return []


class PublicResolver(AbstractResolver):
    """The default resolver, refusing any name that resolves to an address that is not public."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.resolver = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = await self.resolver.resolve(host, port, family)
        if not self.allow_private:
            refused = [entry["host"] for entry in found if not is_public(entry["host"])]
            if refused:
                raise AddressRefused(f"{host} resolves to {refused[0]}, which is not a public address "
                                     "(forward_private_networks is off)")
        return found

    async def close(self) -> None:
        await self.resolver.close()


class Poster:
    def __init__(self, settings: Settings) -> None:
        self.allow_private = settings.forward_private_networks
        self.timeout = aiohttp.ClientTimeout(total=settings.forward_timeout_s)
        self.session: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:  # made inside the running loop, at the first request
            connector = aiohttp.TCPConnector(resolver=PublicResolver(self.allow_private), ttl_dns_cache=10)
            self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, trust_env=False)
        return self.session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        host = URL(url).host or ""
        if not self.allow_private and _is_address(host) and not is_public(host):
            return Refused(f"{host} is not a public address (forward_private_networks is off)")
        try:
            async with self._session().post(url, data=body, allow_redirects=False,
                                            headers={**headers, "Content-Type": "application/json"}) as answer:
                text = (await answer.content.read(MAX_ANSWER_BYTES)).decode(errors="replace")
                return http_outcome(answer.status, answer.headers.get("Retry-After"), text)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                return Refused(str(exc.os_error))
            return Retry(f"{host}: {type(exc).__name__}: {exc}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Retry(f"{host}: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def _is_address(host: str) -> bool:
    try:
        is_public(host)
    except ValueError:
        return False
    return True
