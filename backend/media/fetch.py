"""Fetching a provider's output safely: only from allowed hosts, never into our own network.

A provider's output URL is data from outside. Before each hop (the first request and
every redirect) the host must be on the allow-list and every address it resolves to must
be a public one; the request then goes to an address that was checked (the host travels
in ``Host`` and in TLS's server name), so a DNS answer that changes between the check and
the connection cannot point it at loopback or the cloud's metadata service. The addresses
are tried in the resolver's order, and one that refuses or does not connect in its share
of the time left gives way to the next (``first_to_connect``, which outgoing webhooks
use too). The body is
read in chunks as it travels, never decompressed (a few kilobytes of gzip can inflate to
gigabytes), and refused as soon as it passes the size limit; its declared content type
must be one we store. The whole fetch (every name resolved, every hop, the body) has one
time limit, however slowly a server drips its answer.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import TypeVar

import anyio
import httpx

log = logging.getLogger(__name__)
Sent = TypeVar("Sent")  # what a request sent by first_to_connect's caller gives back

MAX_REDIRECTS = 5
CHUNK = 64 * 1024


class UnsafeMedia(Exception):
    """An output URL we refuse to fetch or a body we refuse to keep; the message says why."""


def system_resolve(host: str, port: int) -> list[str]:
    """The host's addresses in the resolver's order, each once: that order is the system's
    preference (IPv6 or IPv4 first, as this machine's routes suit), so it is the order in
    which they are tried."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


async def resolve_in_time(resolve: Callable[[str, int], list[str]], host: str, port: int):
    """``resolve(host, port)`` in a worker thread that the enclosing time limit
    (``anyio.fail_after``) may abandon: anyio's own getaddrinfo waits for its executor."""
    call = functools.partial(resolve, host, port)
    return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)


@dataclass(frozen=True)
class FetchPolicy:
    """What may be fetched: hosts (``fal.media``, ``*.fal.media``), size, content types.

    ``private_hosts`` are ``host:port`` pairs exempt from the public-address rule: the
    simulated provider in development and the fakes in tests, never in production.
    """

    allowed_hosts: tuple[str, ...]
    max_bytes: int
    content_types: tuple[str, ...] = ("image/", "video/")
    private_hosts: frozenset[str] = frozenset()
    timeout: float = 30.0  # for the whole fetch, redirects and body included
    resolve: Callable[[str, int], list[str]] = field(default=system_resolve, compare=False)

    def host_allowed(self, host: str, port: int) -> bool:
        if f"{host}:{port}" in self.private_hosts:
            return True
        return any(fnmatch(host.lower(), pattern.lower()) for pattern in self.allowed_hosts)


@dataclass(frozen=True)
class Fetched:
    url: str
    content_type: str
    body: bytes


def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` under ``policy``, following at most MAX_REDIRECTS checked redirects."""
    try:
        return anyio.run(_fetch, url, policy)
    except TimeoutError:
        raise UnsafeMedia(f"the fetch took longer than the {policy.timeout:g} s allowed") from None


async def _fetch(url: str, policy: FetchPolicy) -> Fetched:
    with anyio.fail_after(policy.timeout) as deadline:
        async with httpx.AsyncClient(
            timeout=policy.timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"Accept-Encoding": "identity"},
        ) as client:
            for _hop in range(MAX_REDIRECTS + 1):
                target = httpx.URL(url)
                addresses = await _checked_addresses(target, policy)
                routes = [pinned(target, address) for address in addresses]
                get = functools.partial(_get, client, target, policy)
                outcome = await first_to_connect(routes, deadline, policy.timeout, get)
                if isinstance(outcome, Fetched):
                    return outcome
                url = outcome  # a redirect's location, checked as the next hop
    raise UnsafeMedia(f"more than {MAX_REDIRECTS} redirects")


async def _get(
    client: httpx.AsyncClient,
    target: httpx.URL,
    policy: FetchPolicy,
    route: httpx.URL,
    timeout: httpx.Timeout,
) -> Fetched | str:
    """One hop, to ``target`` by way of ``route``: what was fetched, or where a redirect
    points."""
    async with client.stream("GET", route, timeout=timeout, **as_host(target)) as response:
        if response.is_redirect:
            return str(target.join(response.headers["location"]))
        if response.status_code != 200:
            raise UnsafeMedia(f"{_shown(target)} answered {response.status_code}")
        content_type = _checked_type(response, policy)
        body = await _bounded_body(response, policy)
        return Fetched(str(target), content_type, body)


async def _checked_addresses(target: httpx.URL, policy: FetchPolicy) -> list[str]:
    """Every address of the target's host, all of them checked before any is called."""
    if target.scheme not in ("https", "http") or not target.host:
        raise UnsafeMedia(f"{_shown(target)}: only http(s) URLs are fetched")
    port = target.port or (443 if target.scheme == "https" else 80)
    if not policy.host_allowed(target.host, port):
        raise UnsafeMedia(f"{target.host} is not an allowed media host")
    exempt = f"{target.host}:{port}" in policy.private_hosts
    if target.scheme == "http" and not exempt:
        raise UnsafeMedia(f"{_shown(target)}: media is fetched over https only")
    try:
        addresses = await resolve_in_time(policy.resolve, target.host, port)
    except OSError as error:
        raise UnsafeMedia(f"{target.host} does not resolve: {error}") from None
    if not addresses:
        raise UnsafeMedia(f"{target.host} does not resolve")
    if not exempt:
        refuse_private(target.host, addresses)
    return addresses


async def first_to_connect(
    routes: list[httpx.URL],
    deadline: anyio.CancelScope,
    timeout: float,
    send: Callable[[httpx.URL, httpx.Timeout], Awaitable[Sent]],
) -> Sent:
    """``send(route, timeout)`` by way of each route in turn (one URL pinned to each checked
    address of its host), until one connects: what that one returns.

    A route that refuses, or does not connect within an equal share of the time left (so
    that one that never answers leaves the others theirs), gives way to the next; nothing
    was sent there, so nothing is sent twice. The last has all the time left. Once
    connected, any error is the caller's: the request may have gone out. Nothing is
    resolved here, so every address tried is one the caller checked.
    """
    for position, route in enumerate(routes[:-1]):
        share = _share_of_time_left(deadline, routes_left=len(routes) - position)
        try:
            return await send(route, httpx.Timeout(timeout, connect=share))
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            log.info("%s did not connect (%r), trying the next address", route.host, error)
    return await send(routes[-1], httpx.Timeout(timeout))


def _share_of_time_left(deadline: anyio.CancelScope, routes_left: int) -> float:
    return max(0.0, deadline.deadline - anyio.current_time()) / routes_left


def refuse_private(host: str, addresses: Iterable[str]) -> None:
    """UnsafeMedia unless every address is a public unicast one, and so is any IPv4 address
    an IPv6 one carries (a NAT64 or 6to4 gateway would deliver to that one)."""
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        for each in (ip, *carried_ipv4(ip)):
            if (
                not each.is_global
                or each.is_multicast
                or any(each in network for network in NEVER_PUBLIC)
            ):
                raise UnsafeMedia(f"{host} resolves to {ip}, a private or loopback address")


NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)
# never public, whatever this Python's tables say: translators inside a network (RFC 8215)
# and the deprecated site-local range, which some networks still route internally
NEVER_PUBLIC = (ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("fec0::/10"))


def carried_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list:
    """The IPv4 addresses an IPv6 address embeds: mapped, translated, 6to4, Teredo, NAT64,
    compatible."""
    if ip.version == 4:
        return []
    carried = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if any(ip in network for network in (NAT64, IPV4_COMPATIBLE, IPV4_TRANSLATED)):
        carried.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [each for each in carried if each is not None]


def pinned(target: httpx.URL, address: str) -> httpx.URL:
    """The URL with its host replaced by the address that was checked."""
    return target.copy_with(host=address)


def as_host(target: httpx.URL) -> dict:
    """Request options that still name the original host (Host header, TLS server name)."""
    host = target.netloc.decode("ascii")
    return {"headers": {"Host": host}, "extensions": {"sni_hostname": target.host}}


def _checked_type(response: httpx.Response, policy: FetchPolicy) -> str:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # asked for identity: the sender compressed anyway, and we never inflate
        raise UnsafeMedia(f"the body is {encoding}-encoded; only unencoded bodies are fetched")
    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not content_type.startswith(policy.content_types):
        raise UnsafeMedia(f"content type {content_type or 'none'!r} is not stored")
    declared = response.headers.get("content-length")
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > policy.max_bytes
    ):
        raise UnsafeMedia(f"{declared} bytes is more than the {policy.max_bytes} allowed")
    return content_type


async def _bounded_body(response: httpx.Response, policy: FetchPolicy) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw(CHUNK):  # raw: as sent, never decompressed
        body += chunk
        if len(body) > policy.max_bytes:
            raise UnsafeMedia(f"the body is larger than the {policy.max_bytes} bytes allowed")
    return bytes(body)


def _shown(target: httpx.URL) -> str:
    """A URL for messages and logs, without its query (signed URLs carry tokens there)."""
    return str(target.copy_with(query=None, fragment=None))
