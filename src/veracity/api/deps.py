"""Dependency aliases, so route signatures read like sentences."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from veracity.api.auth import ApiKeyAuth
from veracity.api.ratelimit import ANONYMOUS, KeyLimiter
from veracity.errors import RateLimitedError
from veracity.inference.service import ModelService
from veracity.metrics import ServiceMetrics
from veracity.settings import Settings

# auto_error=False: a missing key is answered by ApiKeyAuth with the project's error shape.
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="One of the keys configured in VERACITY_API_KEYS.",
)


def get_model_service(request: Request) -> ModelService:
    service: ModelService = request.app.state.model_service
    return service


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


def require_api_key(
    request: Request,
    # Declared for the OpenAPI security scheme; the header is read (and checked for
    # duplicates and misplaced keys) by ApiKeyAuth itself.
    _: Annotated[str | None, Security(api_key_header)],
) -> str | None:
    """Authenticate, then count the request against the key's rate limit and quota."""
    auth: ApiKeyAuth = request.app.state.auth
    identity = auth.authenticate_request(request.headers, request.query_params)
    request.scope.setdefault("state", {})["api_key_id"] = identity
    limiter: KeyLimiter = request.app.state.limiter
    try:
        limiter.hit(identity)
    except RateLimitedError as e:
        get_metrics(request).throttled.labels(identity or ANONYMOUS, e.code).inc()
        raise
    return identity


ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ApiKeyDep = Annotated[str | None, Depends(require_api_key)]
