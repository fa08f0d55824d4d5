"""The HTTP endpoints: /infer, /health, /ready, /model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from veracity.api.deps import ApiKeyDep, ModelServiceDep
from veracity.api.schemas import (
    ErrorResponse,
    HealthResponse,
    InferResponse,
    ModelResponse,
    PreprocessInfo,
    ReadyResponse,
)
from veracity.errors import BadRequestError, PayloadTooLargeError

# Multipart overhead allowed on top of the image itself (boundaries, part headers).
MULTIPART_OVERHEAD_BYTES = 64 * 1024

_UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The image: JPEG, PNG, WebP, BMP or GIF (first frame).",
                        }
                    },
                }
            }
        },
    }
}


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed multipart body, or more than one file part."),
    401: _error("Missing or invalid X-API-Key."),
    413: _error("Body above VERACITY_MAX_UPLOAD_MB, or image above the pixel limit."),
    415: _error("An image format outside the allowlist (e.g. TIFF, PSD, PDF)."),
    422: _error("No 'file' part, or bytes that are not a readable image."),
    500: _error("Unexpected server error; quote the request_id."),
    503: _error("Model not loaded yet, failed to load, or shutting down (see Retry-After)."),
}


async def read_upload(request: Request, *, max_image_bytes: int) -> bytes:
    """Parse the multipart body (one file part, few fields) and return the file's bytes."""
    form = await request.form(max_files=1, max_fields=4, max_part_size=8 * 1024)
    try:
        upload = form.get("file")
        if upload is None:
            raise BadRequestError(
                "no 'file' part: send the image as multipart/form-data field 'file'"
            ) from None
        if not isinstance(upload, UploadFile):
            raise BadRequestError("the 'file' part must be a file upload, not a text field")
        # One byte past the limit is enough to know the file is too large; the body limit
        # leaves room for multipart overhead, so the file itself is checked here.
        data = await upload.read(max_image_bytes + 1)
    finally:
        await form.close()
    if len(data) > max_image_bytes:
        raise PayloadTooLargeError(
            f"the file exceeds the {max_image_bytes / (1024 * 1024):g} MB upload limit; "
            "send a smaller image"
        )
    if not data:
        raise BadRequestError("the uploaded file is empty")
    return data


def build_router(*, max_upload_bytes: int) -> APIRouter:
    """The API's routes; limits come from settings, so the router is built per app."""
    router = APIRouter()

    @router.post(
        "/infer",
        response_model=InferResponse,
        summary="Classify one image as real or manipulated",
        responses=INFER_ERRORS,
        openapi_extra=_UPLOAD_SCHEMA,
        max_body_size=max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )
    async def infer(request: Request, service: ModelServiceDep, _: ApiKeyDep) -> InferResponse:
        # Auth (a dependency) runs before the body is read, so an unauthenticated client
        # is turned away without uploading anything.
        data = await read_upload(request, max_image_bytes=max_upload_bytes)
        result = await service.predict(data)
        meta = service.metadata
        return InferResponse(
            request_id=request.state.request_id,
            fake_prob=result.prediction.fake_prob,
            real_prob=result.prediction.real_prob,
            label=result.prediction.label,
            model_name=meta.model_name,
            model_version=meta.model_version,
            timings_ms={"preprocess": result.preprocess_ms, "inference": result.inference_ms},
            batch_size=result.batch_size,
        )

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
        responses={401: _error("Missing or invalid X-API-Key."), 503: _error("Not loaded yet.")},
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
        )

    return router
