"""What the service says about its models: versions, their state, and the traffic to them.

Plain frozen values, read from the registry (``describe``) and answered by the model
service to GET /models and the admin routes; the HTTP layer maps them to its own response
models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from veracity.repository.layout import version_key
from veracity.serving.registry import Key, ModelRegistry
from veracity.serving.traffic import Route

VersionStateName = Literal["loaded", "loading", "available", "invalid", "failed"]


@dataclass(frozen=True)
class CheckpointFacts:
    """What a version's checkpoint metadata says about it."""

    architecture: str
    weights_sha256: str
    created_at: str  # ISO 8601
    calibration_version: int | None
    checkpoint_name: str  # model_name recorded in the metadata
    checkpoint_version: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionState:
    """One version in the repository: on disk, loading, in memory, or unusable."""

    version: str
    state: VersionStateName
    reason: str | None = None  # why an invalid or failed version is unusable
    serving: bool = False
    memory_bytes: int | None = None  # held in memory when loaded
    size_bytes: int | None = None
    checkpoint: CheckpointFacts | None = None  # None for an invalid version


@dataclass(frozen=True)
class CanaryShare:
    version: str
    percent: float


@dataclass(frozen=True)
class ShadowTally:
    """How a shadow version's verdicts compared with the serving version's, on this replica
    since it started: the same verdict, another one, or not scored (dropped)."""

    version: str
    agree: int = 0
    disagree: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class ModelState:
    """A model: its versions, and how traffic reaches them."""

    name: str
    default: bool
    serving_version: str | None
    previous_version: str | None
    canary: CanaryShare | None
    shadow_version: str | None
    versions: tuple[VersionState, ...]
    shadow_tally: ShadowTally | None = None  # set by the service, which counts them
    revision: int = 0  # the desired state's revision this replica applied


@dataclass(frozen=True)
class MemoryUse:
    budget_bytes: int
    used_bytes: int


ReplicaStateName = Literal["current", "applying", "failed", "unreachable"]


@dataclass(frozen=True)
class ReplicaState:
    """One replica, as it last reported: the desired state's revision it applied, and
    (``failed``) the later one it could not, and why; it keeps serving what it applied."""

    replica_id: str
    state: ReplicaStateName
    applied_revision: int
    serving: dict[str, str]  # model -> the version its unnamed requests go to
    started_at: datetime
    seen_at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class Fleet:
    """The desired state's latest revision, and every replica sharing it (this one alone
    without a results store)."""

    revision: int
    replica_id: str  # the replica answering
    replicas: tuple[ReplicaState, ...]


@dataclass(frozen=True)
class Catalog:
    """Every model the service has, the memory its loaded versions hold, and the replicas."""

    models: tuple[ModelState, ...]
    memory: MemoryUse
    fleet: Fleet


def describe(registry: ModelRegistry) -> tuple[ModelState, ...]:
    """Every model with its versions, their state and their roles."""
    names = sorted({*registry.routes, *(k[0] for k in registry.problems)})
    return tuple(_model(registry, name) for name in names)


def _model(registry: ModelRegistry, name: str) -> ModelState:
    route = registry.routes.get(name)
    keys = sorted(
        {k for k in (*registry.versions, *registry.problems) if k[0] == name},
        key=lambda k: version_key(k[1]),
    )
    return ModelState(
        name=name,
        default=name == registry.default_model,
        serving_version=route.serving if route else None,
        previous_version=route.previous if route else None,
        canary=(
            CanaryShare(route.canary, route.canary_percent) if route and route.canary else None
        ),
        shadow_version=route.shadow if route else None,
        versions=tuple(_version(registry, key, route) for key in keys),
        revision=registry.revision,
    )


def _version(registry: ModelRegistry, key: Key, route: Route | None) -> VersionState:
    problem = registry.problems.get(key)
    if problem is not None:
        return VersionState(key[1], "invalid", registry.repository.public(problem.reason))
    version = registry.versions[key]
    runner = registry.runners.get(key)
    failure = None
    state: VersionStateName
    if runner is not None and runner.loaded:
        state = "loaded"
    elif registry.loading(key):
        state = "loading"
    else:
        failure = registry.failure(version)
        state = "failed" if failure is not None else "available"
    meta = version.metadata
    return VersionState(
        version=key[1],
        state=state,
        reason=failure.reason if failure is not None else None,
        serving=route is not None and route.serving == key[1],
        memory_bytes=runner.memory_bytes if runner is not None else None,
        size_bytes=version.size_bytes,
        checkpoint=CheckpointFacts(
            architecture=meta.architecture,
            weights_sha256=meta.weights_sha256,
            created_at=meta.created_at.isoformat(),
            calibration_version=meta.calibration.version if meta.calibration else None,
            checkpoint_name=meta.model_name,
            checkpoint_version=meta.model_version,
            metrics=meta.metrics,
        ),
    )
