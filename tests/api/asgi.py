"""Driving the app at the ASGI level, for what an HTTP client library cannot do on purpose:
stall mid-body, or hang up mid-upload or mid-inference."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from fastapi.testclient import TestClient

from tests.api.conftest import API_KEY


@dataclass
class RawResponse:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def multipart(data: bytes, *, key: str = API_KEY) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of an /infer upload, encoded by httpx as a real client would."""
    request = httpx.Request(
        "POST",
        "http://testserver/infer",
        files={"file": ("x.jpg", data, "image/jpeg")},
        headers={"X-API-Key": key},
    )
    body = request.read()
    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    return headers, body


def call(
    client: TestClient,
    headers: list[tuple[bytes, bytes]],
    receive: Callable[[], Awaitable[dict]],
    *,
    path: str = "/infer",
) -> RawResponse:
    """Run one POST through the started app (in the client's event loop) with ``receive``."""
    response = RawResponse()

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            response.status = message["status"]
            response.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            response.body += message.get("body", b"")

    async def run() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        await client.app(scope, receive, send)

    client.portal.call(run)
    return response


def body_then(body: bytes, after: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[dict]]:
    """A receive() that delivers ``body`` whole, then whatever ``after`` returns."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await after()

    return receive


def half_then_disconnect(body: bytes) -> Callable[[], Awaitable[dict]]:
    """A receive() that delivers the first half of ``body``, then the client hangs up."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body[: len(body) // 2], "more_body": True}
        return await disconnect()

    return receive


async def disconnect() -> dict:
    return {"type": "http.disconnect"}


async def stall() -> dict:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")
