"""One JSON error shape for every error, FastAPI's own 404/405/422 included.

``{"error": {"code", "message", "request_id"}}`` (on the Open Inference Protocol's routes,
``{"error": "message"}``, which its clients read). Client errors say what to fix. Anything
unexpected is caught by the request-ID middleware (it wraps the whole app, so the response
still carries the request ID), logged with its traceback and answered with a generic 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from veracity.api.schemas import error_payload
from veracity.errors import VeracityError

logger = logging.getLogger("veracity.api")

# Codes for statuses the framework raises itself.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}

RejectionHook = Callable[[str], None]


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_payload(request.url.path, code, message, _request_id(request))
    return JSONResponse(body, status_code=status, headers=headers)


def _framework_message(status: int, detail: object) -> str:
    if status == 404:
        return "no such endpoint; see /docs for the API"
    if status == 405:
        return "method not allowed on this endpoint; see /docs for the API"
    if status == 413:
        return "request body exceeds the upload limit; send a smaller image"
    if isinstance(detail, str) and detail:
        return detail
    return HTTPStatus(status).phrase


def install_error_handlers(app: FastAPI, on_rejection: RejectionHook | None = None) -> None:
    """Register the handlers; ``on_rejection(code)`` is called for every 4xx (for metrics)."""

    def rejected(code: str) -> None:
        if on_rejection is not None:
            on_rejection(code)

    @app.exception_handler(VeracityError)
    async def handle_veracity_error(request: Request, exc: VeracityError) -> JSONResponse:
        if exc.status_code >= 500:
            logger.error("service error", exc_info=exc)
        else:
            rejected(exc.code)
        headers = getattr(exc, "headers", None)
        return error_response(request, exc.status_code, exc.code, exc.message, headers)

    @app.exception_handler(StarletteHTTPException)
    async def handle_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        if 400 <= exc.status_code < 500:
            rejected(code)
        return error_response(
            request,
            exc.status_code,
            code,
            _framework_message(exc.status_code, exc.detail),
            dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(RequestValidationError)
    async def handle_validation_error(
        request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        rejected("validation_error")
        return error_response(request, 422, "validation_error", f"invalid request: {problems}")
