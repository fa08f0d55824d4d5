"""HTTP-only models: health, errors, receipts checks and the model admin API.

The answers themselves (verdicts, videos, batches) are the contract in ``veracity.answers``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from veracity.answers import ThresholdsModel
from veracity.repository.layout import NAME_PATTERN as MODEL_NAME_PATTERN


class HealthResponse(BaseModel):
    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [{"status": "ok", "model_loaded": True, "checkpoint_exists": True}]
        },
    )

    status: Literal["ok", "starting", "stopping", "failed"]
    model_loaded: bool
    checkpoint_exists: bool


class ReadyResponse(BaseModel):
    ready: bool
    status: Literal["ok", "starting", "stopping", "failed"]


class PreprocessInfo(BaseModel):
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float
    crop_mode: str


class ModelResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    architecture: str
    class_names: list[str]
    input_size: tuple[int, int, int]
    preprocess: PreprocessInfo
    weights_sha256: str
    created_at: str
    metrics: dict[str, float]
    device: str
    backend: str
    calibration: dict[str, Any] | None = Field(
        description="The calibration fit: version, method, OOD threshold and its rule, the "
        "data it was fitted on, ECE before/after. Null for an uncalibrated checkpoint."
    )
    thresholds: ThresholdsModel


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable identifier, e.g. invalid_image.")
    message: str = Field(description="What went wrong and what to do about it.")
    request_id: str | None = Field(description="Quote this when reporting a problem.")


class ErrorResponse(BaseModel):
    """Every error the service returns has this shape, whatever its status."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid_image",
                        "message": "not a readable image; send one of: JPEG, PNG, WEBP, BMP, GIF",
                        "request_id": "5f0c7a6e2b9d4c1e8a3f6b7d9e0a1c2b",
                    }
                }
            ]
        }
    )

    error: ErrorDetail


# The Open Inference Protocol's routes: their clients parse ``{"error": "message"}``.
V2_PREFIX = "/v2"


class V2ErrorResponse(BaseModel):
    """Errors on the Open Inference Protocol routes (the request ID is in X-Request-ID)."""

    error: str


def error_payload(path: str, code: str, message: str, request_id: str | None) -> dict[str, Any]:
    """The error body for a request to ``path``: the project's shape everywhere, except
    on the V2 routes, whose clients (tritonclient, KServe's) read ``error`` as a string."""
    if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        return V2ErrorResponse(error=message).model_dump()
    return ErrorResponse(
        error=ErrorDetail(code=code, message=message, request_id=request_id)
    ).model_dump()


class ReceiptToCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receipt: str = Field(max_length=16_384, description="The receipt (compact JWS).")
    input_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="The SHA-256 of the file you hold, to check the receipt is about it.",
    )


class ReceiptCheck(BaseModel):
    valid: bool
    claims: dict[str, Any]
    matches_input: bool | None = Field(
        description="Whether the receipt is about input_sha256; null when none was given."
    )


# -- models and their lifecycle (GET /models, /admin/models) ---------------------------------


class ModelVersionModel(BaseModel):
    """One version in the model repository."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    state: Literal["loaded", "loading", "available", "invalid", "failed"] = Field(
        description="loaded: in memory, answering; loading; available: on disk, loaded on "
        "first use; invalid: the directory holds no usable checkpoint (see reason); "
        "failed: its last load failed (see reason), and it is tried again once its files "
        "change or the cool-down has passed."
    )
    serving: bool = False
    reason: str | None = Field(
        default=None,
        description="Why an invalid or failed version is unusable (paths are relative to "
        "the model repository).",
    )
    memory_bytes: int | None = Field(default=None, description="Held in memory when loaded.")
    size_bytes: int | None = None
    architecture: str | None = None
    weights_sha256: str | None = None
    created_at: str | None = None
    calibration_version: int | None = None
    checkpoint_name: str | None = Field(
        default=None, description="model_name recorded in the checkpoint's metadata."
    )
    checkpoint_version: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class CanaryModel(BaseModel):
    version: str
    percent: float


class ShadowAgreement(BaseModel):
    version: str = Field(description="The shadow version.")
    agree: int = Field(description="Its verdict was the serving version's.")
    disagree: int = Field(description="Its verdict was another one.")
    dropped: int = Field(description="Not scored (the shadow was busy or failed).")


class ModelEntry(BaseModel):
    """A model: its versions, and how traffic reaches them."""

    name: str
    default: bool = Field(description="Answers requests that name no model.")
    serving_version: str | None
    previous_version: str | None = Field(description="What a rollback returns to.")
    canary: CanaryModel | None
    shadow_version: str | None
    shadow_agreement: ShadowAgreement | None = Field(
        default=None,
        description="How the shadow's verdicts compared with the serving version's, counted "
        "by the replica that answered since it started (Prometheus' "
        "veracity_shadow_comparisons_total sums all replicas).",
    )
    versions: list[ModelVersionModel]
    revision: int = Field(
        default=0,
        description="The revision of the models' desired state this replica applied (0: "
        "its own start-up state, before any admin change). Send it as If-Match with a "
        "change to make it only if nobody changed the models since.",
    )


class ModelMemory(BaseModel):
    budget_bytes: int
    used_bytes: int


class ReplicaModel(BaseModel):
    """A replica sharing the models' desired state, as it last reported."""

    replica_id: str
    state: Literal["current", "applying", "failed", "unreachable"] = Field(
        description="current: it applied the latest revision; applying: it is loading "
        "what the latest needs; failed: the latest does not load there (reason), and it "
        "keeps serving the revision it applied; unreachable: not heard from for three reads."
    )
    applied_revision: int
    serving: dict[str, str] = Field(description="Each model's serving version there.")
    reason: str | None = None
    started_at: datetime
    seen_at: datetime


class ModelList(BaseModel):
    models: list[ModelEntry]
    memory: ModelMemory
    revision: int = Field(
        default=0,
        description="The latest revision of the models' desired state, which every "
        "replica applies within VERACITY_MODEL_SYNC_S seconds.",
    )
    replica_id: str = Field(default="", description="The replica that answered.")
    replicas: list[ReplicaModel] = Field(
        default_factory=list,
        description="Every replica on the same results store heard from in the last day "
        "(just this one without a store).",
    )


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]


class TrafficRequest(BaseModel):
    """A canary share and/or a shadow; leave one out (null) to clear it."""

    model_config = ConfigDict(extra="forbid")

    canary_version: Annotated[str, Field(pattern=MODEL_NAME_PATTERN)] | None = None
    canary_percent: Annotated[float, Field(ge=0, le=100)] = 0.0
    shadow_version: Annotated[str, Field(pattern=MODEL_NAME_PATTERN)] | None = None
