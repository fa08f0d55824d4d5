"""Where a webhook may go: a URL checked in full when a job is created (and again before
each delivery), and the addresses its host resolves to, each of which must be public.

One parser decides: httpx's, the one that sends. The standard library's parse must agree
with it on host and port, so that no URL means one server to the check and another to the
client. The host is resolved once per delivery; the sender connects to the address that
was checked, never to a second answer from DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from veracity.errors import BadRequestError

MAX_URL_CHARS = 2048
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_EXAMPLE = "e.g. https://hooks.example.com/veracity"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Networks that Python 3.11's is_global still calls global although they reach (or can be
# routed to) private space: IPv6 site-local, and 6to4, which embeds any IPv4 address.
_NOT_GLOBAL = (ipaddress.ip_network("fec0::/10"), ipaddress.ip_network("2002::/16"))
# NAT64 embeds an IPv4 address in its last 32 bits: the IPv4 address decides.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class InvalidWebhookUrlError(BadRequestError):
    """A webhook_url that cannot be delivered to, whatever DNS answers."""


@dataclass(frozen=True)
class WebhookTarget:
    url: httpx.URL
    host: str  # ASCII (IDNA) host name, or an IP address without brackets
    port: int
    address: IPAddress | None  # set when the URL names an IP address

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")


def parse_webhook_url(url: str) -> WebhookTarget:
    """The URL, checked in full: what the job route refuses and a delivery gives up on.

    Raises:
        InvalidWebhookUrlError: not an absolute http(s) URL with a valid host and port, with
            credentials in it, or too long; the message says which.
    """
    if len(url) > MAX_URL_CHARS:
        raise InvalidWebhookUrlError(f"webhook_url is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in url):
        raise InvalidWebhookUrlError(
            "webhook_url must not contain spaces, control characters or backslashes; "
            "percent-encode them in the path"
        )
    try:
        parsed = httpx.URL(url)
        parts = urlsplit(url)
        port = parts.port
    except (httpx.InvalidURL, ValueError) as e:
        raise InvalidWebhookUrlError(f"webhook_url is not a valid URL ({e}); {_EXAMPLE}") from e
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise InvalidWebhookUrlError(
            f"webhook_url must be an absolute http:// or https:// URL, {_EXAMPLE}"
        )
    if parsed.userinfo or parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrlError(
            "webhook_url must not carry credentials; verify the Veracity-Signature header instead"
        )
    if port is not None and not 1 <= port <= 65535:
        raise InvalidWebhookUrlError(f"webhook_url's port {port} is not between 1 and 65535")
    default = 443 if parsed.scheme == "https" else 80
    if (parsed.port or default) != (port or default):
        raise InvalidWebhookUrlError("webhook_url's port is ambiguous; write it as digits")
    host = parsed.raw_host.decode("ascii")
    address = _host_address(host)
    try:
        same = (parts.hostname or "").encode("idna").decode("ascii").lower() == host.lower()
    except UnicodeError:
        same = False
    if not same:
        raise InvalidWebhookUrlError(f"webhook_url's host is ambiguous; {_EXAMPLE}")
    return WebhookTarget(parsed, host, port or default, address)


def _host_address(host: str) -> IPAddress | None:
    """The host's IP address if it is one; None for a valid DNS name.

    Raises:
        InvalidWebhookUrlError: neither.
    """
    if "%" in host:
        raise InvalidWebhookUrlError(
            f"webhook_url's host {host!r} holds a percent sign (an encoded character or an "
            "IPv6 zone); write the host name plainly"
        )
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    name = host.lower().removesuffix(".")
    if len(name) > 253:
        raise InvalidWebhookUrlError("webhook_url's host name is longer than 253 characters")
    labels = name.split(".")
    for label in labels:
        if len(label) > 63:
            raise InvalidWebhookUrlError(
                f"webhook_url's host has a label longer than 63 characters ({label[:20]}...)"
            )
        if not _LABEL.match(label):
            raise InvalidWebhookUrlError(
                f"webhook_url's host {host!r} is not a valid host name (letters, digits and "
                "hyphens between dots) or IP address"
            )
    if labels[-1].isdigit():
        raise InvalidWebhookUrlError(
            f"webhook_url's host {host!r} is neither a host name nor an IP address"
        )
    return None


def refusal(address: IPAddress) -> str | None:
    """Why a webhook must not be sent to ``address``; None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refusal(address.ipv4_mapped)
        if any(address in net for net in _NAT64):
            return refusal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(address in net for net in _NOT_GLOBAL):
            return "not a globally routable address"
    if not address.is_global or address.is_reserved:
        return "not a globally routable address"
    if address.is_multicast:
        return "a multicast address"
    return None


Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses, from the system resolver, in its order of preference.

    Raises:
        OSError: the name does not resolve.
    """
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        # A link-local IPv6 answer carries its zone ("fe80::1%eth0").
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses
