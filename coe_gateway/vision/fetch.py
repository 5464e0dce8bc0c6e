"""Remote image URLs, fetched the safe way (only where ``images.remote.enabled``).

A URL is fetched only when all hold: scheme ``https`` (``http`` too with ``allow_http``),
no user info, its host in ``allow_hosts`` (exact, or ``*.example.com`` for any subdomain;
empty: none), and every address the host resolves to public (:func:`address_refusal`:
private, loopback, link-local, multicast, reserved, unspecified and other non-global
addresses refused, IPv4-mapped / 6to4 / NAT64 IPv6 judged by the IPv4 address inside),
unless ``allow_private_networks`` (for tests and trusted internal networks only).

The host is resolved once, here, and the connection goes to the addresses that were
checked: aiohttp's connector gets a :class:`PinnedResolver` that answers only those (no
second lookup, so DNS rebinding cannot swap the address). Redirects are not followed unless
``max_redirects`` > 0, and then every hop is checked again. Timeouts: ``connect_s`` (DNS +
connect), ``read_s`` (between reads), ``total_s`` (the whole fetch, redirects included). The
body is read in chunks and refused as soon as it passes ``max_image_bytes``; the answer must
be 200 with ``Content-Type: image/*``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from coe_gateway.errors import ImageFetchError, ImageHostNotAllowedError, ImageTooLargeError

if TYPE_CHECKING:
    from coe_gateway.config import ImagesConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[list[tuple[int, str]]]]
"""(host, port) -> [(address family, IP address)]: how a host is resolved (tests inject)."""

NAT64 = ipaddress.ip_network("64:ff9b::/96")
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024


def address_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched from (``None``: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
        if inner is not None:
            why = address_refusal(inner)
            return f"{why} ({inner} inside {ip})" if why else None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "not globally routable"


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``host`` matches an allow-list entry: equal, or ``*.d`` and a subdomain of d."""
    host = host.lower().rstrip(".")
    for p in patterns:
        if p.startswith("*.") and host.endswith(p[1:]) and len(host) > len(p) - 1:
            return True
        if host == p:
            return True
    return False


async def system_resolve(host: str, port: int) -> list[tuple[int, str]]:
    """The system resolver (``getaddrinfo``), TCP addresses only."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(int(family), str(sockaddr[0]).split("%")[0]) for family, _, _, _, sockaddr in infos]


class PinnedResolver(AbstractResolver):
    """An aiohttp resolver that answers only ``host``, with the addresses already checked."""

    def __init__(self, host: str, addresses: Sequence[tuple[int, str]]) -> None:
        self.host, self.addresses = host, list(addresses)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host != self.host:
            raise OSError(f"host {host!r} was not resolved and checked by the gateway")
        return [ResolveResult(hostname=host, host=ip, port=port, family=fam, proto=0,
                              flags=socket.AI_NUMERICHOST) for fam, ip in self.addresses]

    async def close(self) -> None:
        return None


class RemoteFetcher:
    """Fetches remote images under ``settings.remote``; see the module docstring."""

    def __init__(self, settings: ImagesConfig, resolve: Resolve = system_resolve) -> None:
        self.settings, self.remote, self.resolve = settings, settings.remote, resolve

    async def fetch(self, url: str, param: str) -> bytes:
        """The image bytes at ``url`` (a 400 naming ``param`` when refused or failed)."""
        try:
            async with asyncio.timeout(self.remote.timeouts.total_s):
                return await self._follow(url, param)
        except TimeoutError:
            raise ImageFetchError(
                f"Could not fetch the image at {_short(url)}: timed out (images.remote."
                "timeouts).", param=param) from None
        except aiohttp.ClientError as exc:
            raise ImageFetchError(f"Could not fetch the image at {_short(url)}: {exc}.",
                                  param=param) from None

    async def _follow(self, url: str, param: str) -> bytes:
        target = URL(url)
        for _ in range(self.remote.max_redirects + 1):
            host = self.check_url(target, param)
            addresses = await self.checked_addresses(host, target.port or 443, param)
            data, location = await self._get(target, host, addresses, param)
            if location is None:
                return data
            target = target.join(URL(location))
        raise ImageFetchError(
            f"Could not fetch the image at {_short(url)}: redirected more than "
            f"{self.remote.max_redirects} times (images.remote.max_redirects).", param=param)

    def check_url(self, url: URL, param: str) -> str:
        """The host of ``url`` when its scheme, user info and host pass the settings."""
        schemes = ("https", "http") if self.remote.allow_http else ("https",)
        if url.scheme not in schemes:
            raise ImageHostNotAllowedError(
                f"Image URL {_short(str(url))}: scheme {url.scheme!r} is not allowed (https"
                f"{'' if self.remote.allow_http else '; http needs images.remote.allow_http'}).",
                param=param)
        host = (url.raw_host or "").lower().rstrip(".")
        if url.user is not None or not host:
            raise ImageHostNotAllowedError(f"Image URL {_short(str(url))}: needs a host and "
                                           "no user info.", param=param)
        if not host_allowed(host, self.remote.allow_hosts):
            raise ImageHostNotAllowedError(
                f"Image host {host!r} is not in images.remote.allow_hosts "
                f"({', '.join(self.remote.allow_hosts) or 'empty: no host is allowed'}).",
                param=param)
        return host

    async def checked_addresses(self, host: str, port: int, param: str
                                ) -> list[tuple[int, str]]:
        """The addresses of ``host``, each one allowed (else a 400 saying which and why)."""
        try:
            async with asyncio.timeout(self.remote.timeouts.connect_s):
                addresses = await self.resolve(host, port)
        except (OSError, TimeoutError) as exc:
            raise ImageFetchError(f"Could not resolve the image host {host!r}: "
                                  f"{exc or 'timed out'}.", param=param) from None
        if not addresses:
            raise ImageFetchError(f"The image host {host!r} has no address.", param=param)
        if self.remote.allow_private_networks:
            return addresses
        for _, ip in addresses:
            why = address_refusal(ipaddress.ip_address(ip))
            if why is not None:
                raise ImageHostNotAllowedError(
                    f"Image host {host!r} resolves to {ip}, a {why} address: refused "
                    "(only public addresses are fetched from).", param=param)
        return addresses

    async def _get(self, url: URL, host: str, addresses: list[tuple[int, str]], param: str
                   ) -> tuple[bytes, str | None]:
        """One hop: the body, or the redirect's ``Location``."""
        t = self.remote.timeouts
        connector = aiohttp.TCPConnector(resolver=PinnedResolver(host, addresses),
                                         use_dns_cache=False, limit=1)
        timeout = aiohttp.ClientTimeout(connect=t.connect_s, sock_read=t.read_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         trust_env=False) as session, \
                session.get(url, allow_redirects=False,
                            headers={"Accept": "image/*"}) as resp:
            if resp.status in REDIRECTS and resp.headers.get("Location"):
                return b"", resp.headers["Location"]
            if resp.status != 200:
                raise ImageFetchError(f"Could not fetch the image at {_short(str(url))}: "
                                      f"HTTP {resp.status}.", param=param)
            if not resp.content_type.startswith("image/"):
                raise ImageFetchError(
                    f"The URL {_short(str(url))} is not an image: Content-Type "
                    f"{resp.content_type!r} (image/* expected).", param=param)
            return await self._read(resp, param), None

    async def _read(self, resp: aiohttp.ClientResponse, param: str) -> bytes:
        """The body, refused as soon as it passes the byte cap."""
        cap = self.settings.max_image_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise _too_large(resp.content_length, cap, param)
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > cap:
                raise _too_large(size, cap, param)
            chunks.append(chunk)
        return b"".join(chunks)


def _too_large(size: int, cap: int, param: str) -> ImageTooLargeError:
    return ImageTooLargeError(f"Image too large: more than {cap:,} bytes (got at least "
                              f"{size:,}; images.max_image_bytes).", param=param)


def _short(url: str, n: int = 80) -> str:
    return url if len(url) <= n else url[:n] + "..."
