"""What the service says about its models: versions, their state, and the traffic to them.

Plain frozen values, built by the registry and read by GET /models, the admin routes and
the V2 metadata; the HTTP layer maps them to its own response models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
class ModelState:
    """A model: its versions, and how traffic reaches them."""

    name: str
    default: bool
    serving_version: str | None
    previous_version: str | None
    canary: CanaryShare | None
    shadow_version: str | None
    versions: tuple[VersionState, ...]


@dataclass(frozen=True)
class MemoryUse:
    budget_bytes: int
    used_bytes: int


@dataclass(frozen=True)
class Catalog:
    """Every model the service has, and the memory its loaded versions hold."""

    models: tuple[ModelState, ...]
    memory: MemoryUse
