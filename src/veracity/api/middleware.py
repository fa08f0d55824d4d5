"""Pure ASGI middleware: request IDs, the access log, security headers, the body limit.

Pure ASGI (rather than BaseHTTPMiddleware) so nothing here buffers a body or changes how
the response streams. The bytes of a body are counted by Starlette's own
``RequestBodyLimitMiddleware``, against the upload routes' limits (``api.limits``).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from opentelemetry import context as otel_context
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veracity.api.limits import BodyLimits
from veracity.api.schemas import error_payload
from veracity.logs import REQUEST_ID
from veracity.tracing import tag_request

logger = logging.getLogger("veracity.access")

REQUEST_ID_HEADER = "x-request-id"
# Accept a caller's ID only if it is safe to echo into headers and logs.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


async def send_error(
    send: Send,
    scope: Scope,
    status: int,
    code: str,
    message: str,
    *,
    close: bool = False,
) -> None:
    """Send the project's error shape (the route's, see error_payload) from below the
    framework."""
    request_id = scope.get("state", {}).get("request_id")
    body = json.dumps(error_payload(scope.get("path", ""), code, message, request_id)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Assigns each request an ID, returns it as ``X-Request-ID``, logs one access line.

    Also the last line of defence: an exception nothing else handled is logged with its
    traceback and answered with a generic 500 that names only the request ID.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        tag_request(request_id)
        started = time.perf_counter()
        status = 500
        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled exception")
            if started_response:
                raise
            await send_error(
                send_with_id,
                scope,
                500,
                "internal_error",
                "internal server error; quote the request_id if you report it",
            )
        finally:
            client = scope.get("client")
            logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                    # The id of the key that authenticated, never the key itself.
                    "key_id": scope.get("state", {}).get("api_key_id"),
                },
            )
            REQUEST_ID.reset(token)


class FreshTraceContext:
    """Starts every HTTP request with no current span, so its server span is a root (or the
    child of the caller's ``traceparent``), never the child of an earlier request.

    uvicorn resumes reading a keep-alive connection from inside a request's task, and asyncio
    then runs the connection's callbacks (and creates the next request's task) in a copy of
    that task's context, current span included: without this, each request on a connection
    would be traced as a child of the one before, and sampled as the first one was.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(otel_context.Context())
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)


SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    # Browsers must not guess a type: a JSON error must never run as HTML or script.
    ("x-content-type-options", "nosniff"),
    # Verdicts on someone's image are not for shared caches or the browser's back button.
    ("cache-control", "no-store"),
    # No page of this service (Swagger UI included) may be framed: no clickjacking.
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
)


class SecurityHeadersMiddleware:
    """Adds ``SECURITY_HEADERS`` to every HTTP response, errors from below the app included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    # A page that brings its own policy (the console's) keeps it: it is
                    # stricter, and frame-ancestors 'none' is in it too.
                    if name != "content-security-policy" or name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimitMiddleware:
    """Holds each request to its route's body limit (``BodyLimits``, one table).

    A body *declared* above the limit is answered 413 at once, before routing, in the
    project's error shape, without reading a byte of it. The upload routes' bodies are also
    counted as they arrive (Starlette's ``RequestBodyLimitMiddleware``), which covers chunked
    bodies: past the limit, the route's read raises the 413.
    """

    def __init__(
        self, app: ASGIApp, *, limits: BodyLimits, on_reject: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.limits = limits
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.limits.of(path)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit.max_bytes:
            await self._reject(scope, send, limit.message)
            return
        if self.limits.route(path) is None:
            await self.app(scope, receive, send)
            return
        await RequestBodyLimitMiddleware(self.app, limit.max_bytes)(scope, receive, send)

    async def _reject(self, scope: Scope, send: Send, message: str) -> None:
        if self.on_reject is not None:
            self.on_reject()
        await send_error(
            send,
            scope,
            413,
            "payload_too_large",
            message,
            # The unread body would otherwise be parsed as the next request.
            close=True,
        )


# The scope-state key under which a route names what counts its body (see BodyBudgetMiddleware).
BODY_BUDGET = "body_budget"


class BodyBudget(Protocol):
    def take_body(self, nbytes: int, own: int) -> None: ...
    def give_body(self, nbytes: int) -> None: ...


class BodyBudgetMiddleware:
    """Counts the body of a request whose route opted in (``scope["state"][BODY_BUDGET]``,
    set before the route reads it) against that budget chunk by chunk as it is received, and
    releases it once the request is answered. A chunk the budget has no room for raises from
    ``receive``, inside the route's read, which answers 503 like any refusal."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        held = 0
        budget: BodyBudget | None = None

        async def counted() -> Message:
            nonlocal held, budget
            message = await receive()
            budget = state.get(BODY_BUDGET)
            size = len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if budget is not None and size:
                budget.take_body(size, held)
                held += size
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            if budget is not None and held:
                budget.give_body(held)
