"""Fetching URL media (emoji gifs, link thumbnails) with a host allowlist, a size cap and a deadline.

The URLs come from chat messages, so anyone in a chat chooses them. Before connecting, the host
must match WEHUB_MEDIA_FETCH_HOSTS, and every address it resolves to must be public unless
WEHUB_MEDIA_FETCH_ALLOW_PRIVATE is set. The connection then goes to the address that was
checked, not to a second DNS answer, so a name cannot pass the check and then resolve to an
internal address. Redirects are followed by hand, each hop checked the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from wehub.settings import Settings

MAX_REDIRECTS = 3
_REDIRECTS = {301, 302, 303, 307, 308}


class FetchRefused(Exception):
    """A URL that was not fetched; `reason` is a short code stored in the media row."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class FetchPolicy:
    """The limits of URL fetching: allowed hosts, private addresses, size and time."""

    hosts: tuple[str, ...]
    allow_private: bool
    max_bytes: int
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        hosts = tuple(host.strip().lower().lstrip(".") for host in str(settings.media_fetch_hosts).split(","))
        return cls(
            hosts=tuple(host for host in hosts if host),
            allow_private=bool(settings.media_fetch_allow_private),
            max_bytes=int(settings.media_fetch_max_bytes),
            timeout_s=float(settings.media_fetch_timeout_s),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.hosts)

    def host_allowed(self, host: str) -> bool:
        """True when `host` is one of the allowed hosts or a subdomain of one."""
        host = host.lower().rstrip(".")
        return any(host == allowed or host.endswith("." + allowed) for allowed in self.hosts)


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str
    url: str


def is_public(address: str) -> bool:
    """False for private, loopback, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def checked_addresses(host: str, port: int, policy: FetchPolicy) -> list[str]:
    """Resolve `host` and check every address; raises FetchRefused when one is not allowed."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise FetchRefused("unresolvable_host") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise FetchRefused("unresolvable_host")
    if not policy.allow_private and not all(is_public(address) for address in addresses):
        raise FetchRefused("private_address")
    return addresses


def _pinned(url: str, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


async def fetch(client: httpx.AsyncClient, url: str, policy: FetchPolicy) -> Fetched:
    """Download `url` within the policy; raises FetchRefused with the reason.

    `client` must not follow redirects nor read proxy settings from the environment.
    """
    try:
        async with asyncio.timeout(policy.timeout_s):
            return await _fetch_following(client, url, policy)
    except TimeoutError:
        raise FetchRefused("timeout", f"{policy.timeout_s:g} s") from None
    except httpx.HTTPError as error:
        raise FetchRefused("unreachable", type(error).__name__) from None


async def _fetch_following(client: httpx.AsyncClient, url: str, policy: FetchPolicy) -> Fetched:
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchRefused("invalid_url")
        host = parts.hostname
        if not policy.host_allowed(host):
            raise FetchRefused("host_not_allowed")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = (await checked_addresses(host, port, policy))[0]
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "image/*, */*"}
        request = client.build_request(
            "GET", _pinned(url, address), headers=headers, extensions={"sni_hostname": host}
        )
        response = await client.send(request, stream=True)
        try:
            if response.status_code in _REDIRECTS and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code != 200:
                raise FetchRefused(f"http_{response.status_code}")
            data = await _read_capped(response, policy.max_bytes)
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
            return Fetched(data, content_type or "application/octet-stream", url)
        finally:
            await response.aclose()
    raise FetchRefused("too_many_redirects")


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused("too_large", f"{declared} bytes")
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > max_bytes:
            raise FetchRefused("too_large", f"more than {max_bytes} bytes")
    return bytes(data)


def make_client(policy: FetchPolicy) -> httpx.AsyncClient:
    """Create the HTTP client for `fetch`: no redirects followed, no proxies from the environment."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=httpx.Timeout(policy.timeout_s))
