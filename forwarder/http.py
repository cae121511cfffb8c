"""HTTP delivery shared by the webhook and Segment destinations: one POST, to a checked address.

The host of the URL is resolved and checked at each request (:mod:`forwarder.addresses`) and the
request goes to that address, with the URL's host in ``Host`` and in TLS's server name (so the
certificate is still checked against the name). Redirects are not followed: a 3xx is refused like any
other status that is not 2xx, 408, 429 or 5xx. At most 4 KB of an answer's body is read.
"""

from __future__ import annotations

import httpx

from forwarder.addresses import AddressRefused, resolve
from forwarder.outcomes import Outcome, Refused, Retry, http_outcome
from headwater.settings import Settings

MAX_ANSWER_BYTES = 4096
SCHEMES = ("http", "https")


def check_url(url: object, name: str = "url") -> list[str]:
    """The problems of a destination's URL setting."""
    if not isinstance(url, str) or not url:
        return [f"{name}: an http or https URL"]
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return [f"{name}: {exc}"]
    if parsed.scheme not in SCHEMES or not parsed.host:
        return [f"{name}: an http or https URL with a host"]
    if parsed.userinfo:
        return [f"{name}: no user or password in the URL (use the destination's settings)"]
    return []


class Poster:
    def __init__(self, settings: Settings) -> None:
        self.allow_private = settings.forward_private_networks
        self.client = httpx.AsyncClient(timeout=settings.forward_timeout_s, follow_redirects=False,
                                        trust_env=False)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        parsed = httpx.URL(url)
        host = parsed.host
        try:
            address = await resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80),
                                    self.allow_private)
        except AddressRefused as exc:
            return Refused(str(exc))
        except OSError as exc:
            return Retry(f"{host}: {exc}")
        pinned = parsed.copy_with(host=address)
        headers = {**headers, "Host": parsed.netloc.decode("ascii"), "Content-Type": "application/json"}
        try:
            async with self.client.stream("POST", pinned, content=body, headers=headers,
                                          extensions={"sni_hostname": host}) as answer:
                text = await _head(answer)
                return http_outcome(answer.status_code, answer.headers.get("retry-after"), text)
        except httpx.HTTPError as exc:
            return Retry(f"{host}: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        await self.client.aclose()


async def _head(answer: httpx.Response) -> str:
    """The first bytes of the answer's body, as text."""
    read = b""
    async for chunk in answer.aiter_raw():
        read += chunk
        if len(read) >= MAX_ANSWER_BYTES:
            break
    return read[:MAX_ANSWER_BYTES].decode(errors="replace")
