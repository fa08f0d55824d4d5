"""Models and their lifecycle: GET /models for every key, /admin/models for admin keys.

Every change goes through the model service: it becomes a revision of the desired state
that every replica on the same results store applies (serving/lifecycle.py); a failed load
or a conflicting change changes nothing. The answer is the model as it stands afterwards
on the replica that answered (the others follow within VERACITY_MODEL_SYNC_S seconds).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Header, Path

from veracity.api.deps import AdminDep, ApiKeyDep, ModelServiceDep
from veracity.api.openapi import MODEL_ERRORS, only
from veracity.api.schemas import (
    CanaryModel,
    ModelEntry,
    ModelList,
    ModelMemory,
    ModelVersionModel,
    PromoteRequest,
    ReplicaModel,
    ShadowAgreement,
    TrafficRequest,
)
from veracity.errors import ModelConflictError
from veracity.repository.layout import NAME_PATTERN
from veracity.serving.catalog import ModelState, ReplicaState, VersionState
from veracity.serving.lifecycle import Change

ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="A model's name.")]
VersionName = Annotated[str, Path(pattern=NAME_PATTERN, description="One of its versions.")]
IfMatch = Annotated[
    str | None,
    Header(
        pattern=r'^(W/)?"?[0-9]{1,9}"?$',
        description="The revision the change is decided on (GET /models' `revision`): "
        "409 revision_conflict, changing nothing, when the models are at another one.",
    ),
]


def _change(caller_key_id: str | None, if_match: str | None) -> Change:
    expected = None if if_match is None else int(if_match.removeprefix("W/").strip('"'))
    return Change(key_id=caller_key_id, expected_revision=expected)


def _version(state: VersionState) -> ModelVersionModel:
    facts = state.checkpoint
    return ModelVersionModel(
        version=state.version,
        state=state.state,
        serving=state.serving,
        reason=state.reason,
        memory_bytes=state.memory_bytes,
        size_bytes=state.size_bytes,
        architecture=facts.architecture if facts else None,
        weights_sha256=facts.weights_sha256 if facts else None,
        created_at=facts.created_at if facts else None,
        calibration_version=facts.calibration_version if facts else None,
        checkpoint_name=facts.checkpoint_name if facts else None,
        checkpoint_version=facts.checkpoint_version if facts else None,
        metrics=facts.metrics if facts else {},
    )


def _entry(model: ModelState) -> ModelEntry:
    canary, tally = model.canary, model.shadow_tally
    return ModelEntry(
        name=model.name,
        default=model.default,
        serving_version=model.serving_version,
        previous_version=model.previous_version,
        canary=CanaryModel(version=canary.version, percent=canary.percent) if canary else None,
        shadow_version=model.shadow_version,
        shadow_agreement=ShadowAgreement(**dataclasses.asdict(tally)) if tally else None,
        versions=[_version(v) for v in model.versions],
        revision=model.revision,
    )


def _replica(replica: ReplicaState) -> ReplicaModel:
    return ReplicaModel(**dataclasses.asdict(replica))


router = APIRouter(tags=["models"])
READ_ERRORS = only(MODEL_ERRORS, 401, 404, 429, 503)


@router.get(
    "/models",
    response_model=ModelList,
    summary="The models this service has, their versions, state and traffic",
    responses=READ_ERRORS,
)
async def list_models(service: ModelServiceDep, _: ApiKeyDep) -> ModelList:
    # Versions dropped into the repository since the last look show up here.
    catalog = await service.catalog()
    memory, fleet = catalog.memory, catalog.fleet
    return ModelList(
        models=[_entry(m) for m in catalog.models],
        memory=ModelMemory(budget_bytes=memory.budget_bytes, used_bytes=memory.used_bytes),
        revision=fleet.revision,
        replica_id=fleet.replica_id,
        replicas=[_replica(r) for r in fleet.replicas],
    )


@router.get(
    "/models/{name}",
    response_model=ModelEntry,
    summary="One model: its versions, state and traffic",
    responses=READ_ERRORS,
)
async def get_model(name: ModelName, service: ModelServiceDep, _: ApiKeyDep) -> ModelEntry:
    return _entry(await service.model(name))


@router.post(
    "/admin/models/{name}/versions/{version}/load",
    response_model=ModelEntry,
    summary="Load and warm up a version on every replica, without traffic (admin)",
    description="The version is kept warm (never evicted) until unloaded. Unloads least "
    "recently used versions if the memory budget needs it. 422 model_load_failed "
    "(corrupt or mismatched checkpoint) and 507 model_memory_exceeded leave everything as "
    "it was.",
    responses=MODEL_ERRORS,
)
async def load(
    name: ModelName,
    version: VersionName,
    service: ModelServiceDep,
    caller: AdminDep,
    if_match: IfMatch = None,
) -> ModelEntry:
    change = _change(caller.key_id, if_match)
    return _entry(await service.load_version(name, version, change))


@router.post(
    "/admin/models/{name}/versions/{version}/unload",
    response_model=ModelEntry,
    summary="Unload a version (admin)",
    description="No replica keeps it warm any longer; this one unloads it once the "
    "requests on it finish. 409 while it is the default model's serving, canary or shadow "
    "version; another model's version loads again on its next request.",
    responses=MODEL_ERRORS,
)
async def unload(
    name: ModelName,
    version: VersionName,
    service: ModelServiceDep,
    caller: AdminDep,
    if_match: IfMatch = None,
) -> ModelEntry:
    change = _change(caller.key_id, if_match)
    return _entry(await service.unload_version(name, version, change))


@router.post(
    "/admin/models/{name}/promote",
    response_model=ModelEntry,
    summary="Serve another version on every replica: loaded and warmed up first, then "
    "switched (admin)",
    description="Requests in flight finish on the version they started on; the one "
    "replaced becomes previous_version, which POST .../rollback returns to. A failed "
    "load leaves the serving version as it was; a replica where the version does not "
    "load keeps serving the one before and says why in GET /models.",
    responses=MODEL_ERRORS,
)
async def promote(
    name: ModelName,
    body: PromoteRequest,
    service: ModelServiceDep,
    caller: AdminDep,
    if_match: IfMatch = None,
) -> ModelEntry:
    return _entry(await service.promote(name, body.version, _change(caller.key_id, if_match)))


@router.post(
    "/admin/models/{name}/rollback",
    response_model=ModelEntry,
    summary="Serve the previous version again (admin)",
    description="409 when nothing was promoted over a previous version.",
    responses=MODEL_ERRORS,
)
async def rollback(
    name: ModelName, service: ModelServiceDep, caller: AdminDep, if_match: IfMatch = None
) -> ModelEntry:
    return _entry(await service.rollback(name, _change(caller.key_id, if_match)))


@router.put(
    "/admin/models/{name}/traffic",
    response_model=ModelEntry,
    summary="Send a share of traffic to a canary version, or shadow one (admin)",
    description="`canary_percent` of the requests that name no version go to "
    "`canary_version` (split exactly, not at random); `shadow_version` also scores "
    "every single image the serving version answers, in the background, recorded "
    "beside the answer (GET /predictions?shadow_of=ID) and compared in the metrics. "
    "Null clears either.",
    responses=MODEL_ERRORS,
)
async def traffic(
    name: ModelName,
    body: TrafficRequest,
    service: ModelServiceDep,
    caller: AdminDep,
    if_match: IfMatch = None,
) -> ModelEntry:
    if body.canary_version is None and body.canary_percent > 0:
        raise ModelConflictError("canary_percent needs a canary_version")
    model = await service.set_traffic(
        name,
        canary=body.canary_version,
        canary_percent=body.canary_percent,
        shadow=body.shadow_version,
        change=_change(caller.key_id, if_match),
    )
    return _entry(model)
