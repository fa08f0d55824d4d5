"""Probes and the default model's metadata: /health, /ready, /model."""

from __future__ import annotations

from fastapi import APIRouter, Response

from veracity.answers import ThresholdsModel
from veracity.api.deps import ApiKeyDep, ModelServiceDep
from veracity.api.openapi import AUTH_ERRORS, NOT_LOADED
from veracity.api.schemas import HealthResponse, ModelResponse, PreprocessInfo, ReadyResponse

router = APIRouter()


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Liveness: the process is up (200), or the model failed to load (503)",
    responses={503: {"model": HealthResponse, "description": "The model failed to load."}},
)
async def health(service: ModelServiceDep, response: Response) -> HealthResponse:
    if service.state == "failed":
        response.status_code = 503
    return HealthResponse(
        status=service.state,
        model_loaded=service.model_loaded,
        checkpoint_exists=service.checkpoint_exists,
    )


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness: 200 once warmed up, 503 while loading or shutting down",
    responses={503: {"model": ReadyResponse, "description": "Not ready for traffic."}},
)
async def ready(service: ModelServiceDep, response: Response) -> ReadyResponse:
    if not service.ready:
        response.status_code = 503
        response.headers["Retry-After"] = "1"
    return ReadyResponse(ready=service.ready, status=service.state)


@router.get(
    "/model",
    response_model=ModelResponse,
    summary="Metadata of the loaded checkpoint",
    responses=AUTH_ERRORS | NOT_LOADED,
)
async def model(service: ModelServiceDep, _: ApiKeyDep) -> ModelResponse:
    meta = service.metadata
    return ModelResponse(
        model_name=meta.model_name,
        model_version=meta.model_version,
        architecture=meta.architecture,
        class_names=list(meta.class_names),
        input_size=meta.preprocess.input_size,
        preprocess=PreprocessInfo(**meta.preprocess.model_dump()),
        weights_sha256=meta.weights_sha256,
        created_at=meta.created_at.isoformat(),
        metrics=meta.metrics,
        device=service.device,
        backend=service.backend,
        calibration=meta.calibration.model_dump(mode="json") if meta.calibration else None,
        thresholds=ThresholdsModel(
            real=service.policy.thresholds.real_threshold,
            fake=service.policy.thresholds.fake_threshold,
        ),
    )
