"""Response models: the public contract, with examples for the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class InferResponse(BaseModel):
    """``request_id``, ``fake_prob`` and ``real_prob`` are the contract; the rest is additive."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "request_id": "5f0c7a6e2b9d4c1e8a3f6b7d9e0a1c2b",
                    "fake_prob": 0.0213,
                    "real_prob": 0.9787,
                    "label": "real",
                    "model_name": "veracity-demo",
                    "model_version": "1.0.0",
                    "timings_ms": {"preprocess": 6.1, "inference": 21.4},
                    "batch_size": 1,
                }
            ]
        },
    )

    request_id: str = Field(description="Also returned in the X-Request-ID header.")
    fake_prob: float = Field(ge=0.0, le=1.0, description="Probability the image is manipulated.")
    real_prob: float = Field(ge=0.0, le=1.0, description="1 - fake_prob.")
    label: Literal["real", "fake"] = Field(description="The more probable class.")
    model_name: str
    model_version: str
    timings_ms: dict[str, float] = Field(description="Server-side preprocess/inference times.")
    batch_size: int = Field(ge=1, description="Requests that shared this forward pass.")


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
