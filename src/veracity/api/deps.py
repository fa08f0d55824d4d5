"""Dependency aliases, so route signatures read like sentences."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from veracity.api.auth import ApiKeyAuth
from veracity.inference.service import ModelService
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


def require_api_key(
    request: Request, api_key: Annotated[str | None, Security(api_key_header)]
) -> str | None:
    auth: ApiKeyAuth = request.app.state.auth
    identity = auth.authenticate(api_key)
    request.scope.setdefault("state", {})["api_key_id"] = identity
    return identity


ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ApiKeyDep = Annotated[str | None, Depends(require_api_key)]
