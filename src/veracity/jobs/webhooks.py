"""Webhooks: a finished job's outcome POSTed to the URL its creator gave, signed with
HMAC-SHA256.

The signature follows the common scheme (Stripe's, Standard Webhooks'): header
``Veracity-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` under the
secret of the key that created the job (``key_secret``: derived from the deployment's
webhook secret and the key's ID; ``GET /webhooks/secret`` tells a key its own), so a
receiver checks who sent it, that it is fresh, and that no other key's receiver made it up.
The URL is someone else's server, so the service never follows redirects and, unless
allowed, refuses any address that is not globally routable: the host is resolved once per
delivery, every address checked, and the connection made to a checked address (see
``webhook_targets``), so a name cannot be pointed at the service's neighbours between the
check and the connection.

A delivery made under a span (the job runner's ``webhook.deliver``) carries its W3C
``traceparent`` header, so a receiver that traces can continue the job's trace.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from veracity.jobs.webhook_targets import (
    InvalidWebhookUrlError,
    IPAddress,
    Resolver,
    WebhookTarget,
    parse_webhook_url,
    refusal,
    resolve,
)
from veracity.tracing import inject_traceparent

SIGNATURE_HEADER = "Veracity-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, as Stripe marks its webhook secrets)

# Addresses of one host tried per delivery (each a connection attempt within the bound).
_MAX_ADDRESSES = 3


def key_secret(webhook_secret: str, key_id: str | None) -> str:
    """The secret one key's webhooks are signed with (None: auth is off, one caller).

    Derived, not stored: HMAC-SHA256 of the key's ID under the deployment's secret, so every
    replica computes the same one, and knowing it reveals neither the deployment's secret
    nor any other key's.
    """
    label = b"veracity webhook secret\x00" + (key_id or "").encode()
    return SECRET_PREFIX + hmac.new(webhook_secret.encode(), label, hashlib.sha256).hexdigest()


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
    """The URL, checked in full when a job is created (the same check a delivery makes).

    Raises:
        BadRequestError: not an absolute http(s) URL with a valid host and port,
            credentials in it, or too long; the message says which.
    """
    parse_webhook_url(url)
    return url


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    error: str | None  # why not, for the job's record
    final: bool = False  # retrying cannot help (the URL itself is invalid)


class _RefusedError(Exception):
    """The host cannot be delivered to now (does not resolve, or not to public addresses)."""


class WebhookSender:
    def __init__(
        self,
        webhook_secret: str,
        *,
        timeout_s: float,
        allow_private: bool,
        resolver: Resolver = resolve,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._secret = webhook_secret
        self._timeout_s = timeout_s
        self._allow_private = allow_private
        self._resolve = resolver
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            # Environment proxies would send the job's outcome somewhere the creator did not
            # name.
            trust_env=False,
            # A connection is made to a checked address for one host name (Host, SNI, the
            # certificate); kept alive, it could be reused for another name at that address.
            limits=httpx.Limits(max_keepalive_connections=0),
            transport=transport,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send(
        self, url: str, payload: dict[str, Any], event_id: str, *, key_id: str | None
    ) -> Delivery:
        """POST ``payload`` to ``url``, signed with ``key_id``'s secret; never raises for
        anything the URL, its host or the receiver does."""
        try:
            target = parse_webhook_url(url)
        except InvalidWebhookUrlError as e:
            return Delivery(False, f"given up: {e.message}", final=True)
        try:
            addresses = await self._addresses(target)
        except _RefusedError as e:
            return Delivery(False, str(e))
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        secret = key_secret(self._secret, key_id)
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": "veracity-webhooks",
            "Veracity-Event-Id": event_id,
            SIGNATURE_HEADER: signature(secret, int(time.time()), body),
        }
        inject_traceparent(headers)
        # TLS is verified for the name in the URL, not the address connected to.
        extensions = (
            {"sni_hostname": target.host.removesuffix(".")}
            if target.address is None and target.url.scheme == "https"
            else {}
        )
        error = "no address to connect to"
        try:
            # One bound on the whole delivery (httpx's timeout is per read: a receiver that
            # sends a byte every few seconds would hold the replica's one delivery loop),
            # and at most a few addresses tried.
            async with asyncio.timeout(self._timeout_s):
                for address in addresses[:_MAX_ADDRESSES]:
                    pinned = target.url.copy_with(host=str(address))
                    try:
                        response = await self._client.post(
                            pinned, content=body, headers=headers, extensions=extensions
                        )
                    except httpx.ConnectError as e:
                        error = _describe(e)
                        continue  # the next checked address, as a client given several would
                    except httpx.HTTPError as e:
                        return Delivery(False, _describe(e))
                    if 200 <= response.status_code < 300:
                        return Delivery(True, None)
                    return Delivery(False, f"the receiver answered HTTP {response.status_code}")
        except TimeoutError:
            return Delivery(False, f"the receiver did not answer within {self._timeout_s:g} s")
        return Delivery(False, error)

    async def _addresses(self, target: WebhookTarget) -> list[IPAddress]:
        """The addresses to connect to, all checked.

        Raises:
            _RefusedError: the host does not resolve, or (unless allowed) resolves to an address
                that is not public.
        """
        if target.address is not None:
            addresses = [target.address]
        else:
            try:
                addresses = await self._resolve(target.host, target.port)
            except (OSError, UnicodeError, ValueError) as e:
                raise _RefusedError(
                    f"the webhook host {target.host!r} does not resolve ({e})"
                ) from e
            if not addresses:
                raise _RefusedError(f"the webhook host {target.host!r} resolves to no address")
        if not self._allow_private:
            for address in addresses:
                why = refusal(address)
                if why is not None:
                    raise _RefusedError(
                        f"the webhook host {target.host!r} resolves to a non-public address "
                        f"({address}: {why}); set VERACITY_WEBHOOK_ALLOW_PRIVATE=true to "
                        "allow it"
                    )
        return addresses


def _describe(e: httpx.HTTPError) -> str:
    return f"{type(e).__name__}: {str(e)[:200] or 'no detail'}"
