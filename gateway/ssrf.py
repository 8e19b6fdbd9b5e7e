"""Keeping webhooks off private networks (SSRF): checked at registration and at connect time.

A destination may not be loopback, private, link-local, reserved, multicast, unspecified or
otherwise not globally routable — nor an IPv4-mapped IPv6 address of one. The check runs when
an endpoint is registered and again on every connection, through a resolver that drops refused
addresses, so a DNS answer that changes after registration (rebinding) is caught.
`LEADGATE_ALLOW_PRIVATE_DESTINATIONS` turns it off for development and tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(ValueError):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


class RefusedAtConnect(OSError):
    """Raised by the resolver: every address of a host is one webhooks may not reach."""


def refused_because(ip: IPAddress) -> str | None:
    """Why webhooks may not go to `ip`, or None if they may."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return refused_because(ip.ipv4_mapped)
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    # The narrower classes first, so the reason names the most specific one.
    for test, reason in (
        (ip.is_loopback, "loopback"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (site_local, "site-local"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
    ):
        if test:
            return reason
    if not ip.is_global:
        return "not globally routable"
    return None


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_url_shape(url: str) -> str:
    """The URL's host, if it is an absolute http(s) URL; DestinationRefused otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused("must be an http or https URL")
    if not parts.hostname:
        raise DestinationRefused("must name a host")
    if parts.username or parts.password:
        raise DestinationRefused("must not carry credentials; use the endpoint's headers")
    return parts.hostname


async def check_destination(
    url: str, *, allow_private: bool, resolver: AbstractResolver | None = None
) -> None:
    """Refuse a URL whose host is, or resolves to, a refused address (through `resolver`, or
    the system's)."""
    host = check_url_shape(url)
    if allow_private:
        return
    if (ip := ip_literal(host)) is not None:
        addresses: list[IPAddress] = [ip]
    else:
        try:
            addresses = await _addresses(host, resolver)
        except OSError as e:
            raise DestinationRefused(f"host {host!r} does not resolve") from e
    for address in addresses:
        if reason := refused_because(address):
            raise DestinationRefused(f"host {host!r} resolves to a {reason} address ({address})")


async def _addresses(host: str, resolver: AbstractResolver | None) -> list[IPAddress]:
    if resolver is None:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        return [ipaddress.ip_address(info[4][0]) for info in infos]
    results = await resolver.resolve(host, 0, socket.AF_UNSPEC)
    return [ipaddress.ip_address(r["host"]) for r in results]


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then drops every refused address; none left → connection error."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if refused_because(ipaddress.ip_address(r["host"])) is None]
        if not allowed:
            raise RefusedAtConnect(
                f"refused destination: {host} resolves only to non-public addresses"
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()


async def check_resolved(resolver: AbstractResolver, host: str, port: int) -> None:
    """Refuse `host` if any address it resolves to is refused (DestinationRefused).

    For a destination a forward proxy will resolve again: any address could be the one it
    picks, so one refused address refuses the host. A name that does not resolve raises
    OSError."""
    if ip_literal(host) is not None:
        return  # literals are checked by refuse_literal, without a lookup
    for result in await resolver.resolve(host, port, socket.AF_UNSPEC):
        if reason := refused_because(ipaddress.ip_address(result["host"])):
            raise DestinationRefused(f"host {host!r} resolves to a {reason} address")


def refuse_literal(host: str, *, allow_private: bool) -> None:
    """aiohttp does not resolve IP literals, so they are checked here before connecting."""
    if allow_private:
        return
    if (ip := ip_literal(host)) is not None and (reason := refused_because(ip)):
        raise DestinationRefused(f"{reason} address {ip}")
