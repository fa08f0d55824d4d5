"""Webhooks: a finished job's outcome POSTed to the URL its creator gave, signed with
HMAC-SHA256.

The signature follows the common scheme (Stripe's, Standard Webhooks'): header
``Veracity-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` under the
deployment's webhook secret, so a receiver checks both who sent it and that it is fresh.
The URL is someone else's server, so the service never follows redirects and, unless
allowed, refuses addresses inside private, loopback and link-local networks (resolved at
send time, so a name cannot be pointed at the service's neighbours after it was accepted).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from veracity.errors import BadRequestError

MAX_URL_CHARS = 2048
SIGNATURE_HEADER = "Veracity-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """What a receiver does (and what the tests do): the MAC matches and is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def check_webhook_url(url: str) -> str:
    """The URL's shape, checked when a job is created.

    Raises:
        BadRequestError: not an absolute http(s) URL, credentials in it, or too long.
    """
    if len(url) > MAX_URL_CHARS:
        raise BadRequestError(f"webhook_url is longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError(
            "webhook_url must be an absolute http:// or https:// URL, e.g. "
            "https://hooks.example.com/veracity"
        )
    if parts.username or parts.password:
        raise BadRequestError(
            "webhook_url must not carry credentials; verify the Veracity-Signature header instead"
        )
    return url


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    error: str | None  # why not, for the job's record


class WebhookSender:
    def __init__(self, secret: str, *, timeout_s: float, allow_private: bool) -> None:
        self._secret = secret
        self._timeout_s = timeout_s
        self._allow_private = allow_private
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            # Environment proxies would send the job's outcome somewhere the creator did not
            # name.
            trust_env=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, url: str, payload: dict[str, Any], event_id: str) -> Delivery:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        if not self._allow_private:
            refused = await self._refused_address(url)
            if refused is not None:
                return Delivery(False, refused)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "veracity-webhooks",
            "Veracity-Event-Id": event_id,
            SIGNATURE_HEADER: signature(self._secret, int(time.time()), body),
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return Delivery(False, f"{type(e).__name__}: {str(e)[:200] or 'no detail'}")
        if 200 <= response.status_code < 300:
            return Delivery(True, None)
        return Delivery(False, f"the receiver answered HTTP {response.status_code}")

    async def _refused_address(self, url: str) -> str | None:
        host = urlsplit(url).hostname or ""
        port = urlsplit(url).port or 443
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as e:
            return f"the webhook host {host!r} does not resolve ({e})"
        for *_, sockaddr in infos:
            if not _public(str(sockaddr[0])):
                return (
                    f"the webhook host {host!r} resolves to a non-public address "
                    f"({sockaddr[0]}); set VERACITY_WEBHOOK_ALLOW_PRIVATE=true to allow it"
                )
        return None
