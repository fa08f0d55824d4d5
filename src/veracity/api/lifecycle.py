"""Models and their lifecycle: GET /models for every key, /admin/models for admin keys.

Every change goes through the registry, which serialises them and changes nothing when a
load fails; the answer is the model as it stands afterwards.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from veracity.api.deps import AdminDep, ApiKeyDep, ModelServiceDep
from veracity.api.schemas import (
    ModelEntry,
    ModelList,
    ModelMemory,
    PromoteRequest,
    TrafficRequest,
)
from veracity.errors import ModelConflictError, ModelNotFoundError
from veracity.repository.layout import NAME_PATTERN
from veracity.serving.service import ModelService

ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="A model's name.")]
VersionName = Annotated[str, Path(pattern=NAME_PATTERN, description="One of its versions.")]


def _listing(service: ModelService) -> ModelList:
    registry = service.registry
    return ModelList(
        models=[ModelEntry.model_validate(m) for m in registry.describe()],
        memory=ModelMemory(budget_bytes=registry.budget_bytes, used_bytes=registry.used_bytes()),
    )


def _entry(service: ModelService, name: str) -> ModelEntry:
    for model in service.registry.describe():
        if model["name"] == name:
            return ModelEntry.model_validate(model)
    raise ModelNotFoundError(f"no model named {name!r}; GET /models lists the models")


def build_lifecycle_router(errors: dict[int | str, dict[str, Any]]) -> APIRouter:
    router = APIRouter(tags=["models"])
    read_errors: dict[int | str, dict[str, Any]] = {
        k: v for k, v in errors.items() if k in (401, 404, 429, 503)
    }
    admin_errors = errors

    @router.get(
        "/models",
        response_model=ModelList,
        summary="The models this service has, their versions, state and traffic",
        responses=read_errors,
    )
    async def list_models(service: ModelServiceDep, _: ApiKeyDep) -> ModelList:
        # Versions dropped into the repository since the last look show up here.
        await service.registry.rescan()
        return _listing(service)

    @router.get(
        "/models/{name}",
        response_model=ModelEntry,
        summary="One model: its versions, state and traffic",
        responses=read_errors,
    )
    async def get_model(name: ModelName, service: ModelServiceDep, _: ApiKeyDep) -> ModelEntry:
        await service.registry.rescan()
        return _entry(service, name)

    @router.post(
        "/admin/models/{name}/versions/{version}/load",
        response_model=ModelEntry,
        summary="Load and warm up a version without sending it traffic (admin)",
        description="Unloads least recently used versions if the memory budget needs it. "
        "422 model_load_failed (corrupt or mismatched checkpoint) and 507 "
        "model_memory_exceeded leave everything as it was.",
        responses=admin_errors,
    )
    async def load(
        name: ModelName, version: VersionName, service: ModelServiceDep, _: AdminDep
    ) -> ModelEntry:
        await service.registry.load(name, version)
        return _entry(service, name)

    @router.post(
        "/admin/models/{name}/versions/{version}/unload",
        response_model=ModelEntry,
        summary="Unload a version (admin)",
        description="Requests already on it finish first. 409 while it is the default "
        "model's serving, canary or shadow version; another model's version loads again "
        "on its next request.",
        responses=admin_errors,
    )
    async def unload(
        name: ModelName, version: VersionName, service: ModelServiceDep, _: AdminDep
    ) -> ModelEntry:
        await service.registry.unload(name, version)
        return _entry(service, name)

    @router.post(
        "/admin/models/{name}/promote",
        response_model=ModelEntry,
        summary="Serve another version: loaded and warmed up first, then switched (admin)",
        description="Requests in flight finish on the version they started on; the one "
        "replaced becomes previous_version, which POST .../rollback returns to. A failed "
        "load leaves the serving version as it was.",
        responses=admin_errors,
    )
    async def promote(
        name: ModelName, body: PromoteRequest, service: ModelServiceDep, _: AdminDep
    ) -> ModelEntry:
        await service.registry.promote(name, body.version)
        return _entry(service, name)

    @router.post(
        "/admin/models/{name}/rollback",
        response_model=ModelEntry,
        summary="Serve the previous version again (admin)",
        description="409 when nothing was promoted over a previous version.",
        responses=admin_errors,
    )
    async def rollback(name: ModelName, service: ModelServiceDep, _: AdminDep) -> ModelEntry:
        await service.registry.rollback(name)
        return _entry(service, name)

    @router.put(
        "/admin/models/{name}/traffic",
        response_model=ModelEntry,
        summary="Send a share of traffic to a canary version, or shadow one (admin)",
        description="`canary_percent` of the requests that name no version go to "
        "`canary_version` (split exactly, not at random); `shadow_version` also scores "
        "every single image the serving version answers, in the background, recorded "
        "beside the answer (GET /predictions?shadow_of=ID) and compared in the metrics. "
        "Null clears either.",
        responses=admin_errors,
    )
    async def traffic(
        name: ModelName, body: TrafficRequest, service: ModelServiceDep, _: AdminDep
    ) -> ModelEntry:
        if body.canary_version is None and body.canary_percent > 0:
            raise ModelConflictError("canary_percent needs a canary_version")
        await service.registry.set_traffic(
            name,
            canary=body.canary_version,
            canary_percent=body.canary_percent,
            shadow=body.shadow_version,
        )
        return _entry(service, name)

    return router
