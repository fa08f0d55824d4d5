"""The Open Inference Protocol (V2) over REST: what Triton's and KServe's clients call.

Health and readiness are open (probes); metadata and inference take the same X-API-Key as
/infer. Inference runs the same path as /infer and /infer/batch (admission, the cache, the
store, shadow scores), so a V2 answer is recorded, cached and comparable like any other.
Errors on these routes are ``{"error": "message"}``, which the protocol's clients read.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from veracity import __version__
from veracity.api.deps import ApiKeyDep, CallerDep, ModelServiceDep, RecorderDep
from veracity.api.routes import hold_body, served
from veracity.api.schemas import V2ErrorResponse
from veracity.callers import Caller
from veracity.errors import (
    ClientDisconnectedError,
    RequestTimeoutError,
    ServiceUnavailableError,
    VeracityError,
)
from veracity.oip.codec import (
    HEADER_LENGTH,
    INPUT_NAME,
    OUTPUTS,
    Limits,
    encode_response,
    parse_request,
)
from veracity.repository.layout import NAME_PATTERN
from veracity.serving.judging import judge_batch, judge_image
from veracity.serving.recording import Recorder
from veracity.serving.service import ModelService

ModelName = Annotated[str, Path(pattern=NAME_PATTERN)]
VersionName = Annotated[str, Path(pattern=NAME_PATTERN)]


@dataclass(frozen=True)
class V2Limits:
    max_items: int
    max_item_bytes: int
    max_body_bytes: int
    body_timeout_s: float


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": V2ErrorResponse} for status in statuses}


def _versions(service: ModelService, name: str, version: str | None) -> list[str]:
    registry = service.registry
    registry.check(name, version)
    if version is not None:
        return [version]
    return sorted(v for n, v in registry.versions if n == name)


def build_v2_router(limits: V2Limits) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
    codec_limits = Limits(max_items=limits.max_items, max_item_bytes=limits.max_item_bytes)

    @router.get(
        "/health/live",
        response_model=LiveResponse,
        summary="V2: the server is live; 503 when its default model failed to load",
        responses={503: {"model": LiveResponse}},
    )
    async def live(service: ModelServiceDep) -> Response:
        # As /health: a failed load is what a restart can cure; loading is not.
        alive = service.state != "failed"
        return JSONResponse(
            LiveResponse(live=alive).model_dump(), status_code=200 if alive else 503
        )

    @router.get(
        "/health/ready",
        response_model=ReadyResponse,
        summary="V2: the server is ready (its default model is loaded); 503 otherwise",
        responses={503: {"model": ReadyResponse}},
    )
    async def ready(service: ModelServiceDep) -> Response:
        body = ReadyResponse(ready=service.ready).model_dump()
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @router.get(
        "",
        response_model=ServerMetadata,
        summary="V2: server metadata",
        responses=_errors(401, 429),
    )
    async def server_metadata(_: ApiKeyDep) -> ServerMetadata:
        return ServerMetadata(
            name="veracity", version=__version__, extensions=["binary_tensor_data"]
        )

    async def model_metadata(
        service: ModelService, name: str, version: str | None
    ) -> ModelMetadata:
        versions = _versions(service, name, version)
        return ModelMetadata(
            name=name,
            versions=versions,
            platform="veracity",
            inputs=[TensorMetadata(name=INPUT_NAME, datatype="BYTES", shape=[-1])],
            outputs=[
                TensorMetadata(name=output, datatype=datatype, shape=[-1])
                for output, datatype in OUTPUTS.items()
            ],
        )

    async def model_ready(
        service: ModelService, name: str, version: str | None
    ) -> ModelReadyResponse:
        registry = service.registry
        registry.check(name, version)
        chosen = version or registry.routes[name].serving
        runner = registry.runners.get((name, chosen))
        if runner is None or not runner.loaded:
            how = (
                "it loads on its first inference request"
                if registry.load_on_demand
                else "this deployment loads versions only when an admin asks "
                "(VERACITY_MODEL_LOAD_ON_DEMAND=false)"
            )
            raise ServiceUnavailableError(f"{name}/{chosen} is not loaded; {how}")
        return ModelReadyResponse(name=name, ready=True)

    async def infer(
        request: Request,
        service: ModelService,
        recorder: Recorder,
        caller: Caller,
        name: str,
        version: str | None,
    ) -> Response:
        service.check_admission()
        service.registry.check(name, version)
        hold_body(request, service)
        body = await _read_body(request, limits.body_timeout_s)
        parsed = parse_request(body, request.headers.get(HEADER_LENGTH), codec_limits)
        request_id: str = request.state.request_id
        images = parsed.images
        if len(images) == 1:
            answer, row = await judge_image(
                service,
                recorder,
                caller,
                images[0],
                request_id=request_id,
                robustness_check=None,
                run=lambda work: served(request, service, work),
                model=name,
                version=version,
            )
            answers, rows = [answer], [row]
        else:
            results, rows = await judge_batch(
                service,
                recorder,
                caller,
                [(None, data) for data in images],
                request_id=request_id,
                robustness_check=None,
                run=lambda work: served(request, service, work),
                model=name,
                version=version,
            )
            for index, (_, result) in enumerate(results):
                # The protocol has no per-element errors: the first bad image fails all.
                if isinstance(result, VeracityError):
                    # A copy keeps the error's status, code and headers (Retry-After);
                    # some error classes take more than a message to construct.
                    failure = copy.copy(result)
                    failure.message = f"element {index} of input 'image': {result.message}"
                    failure.args = (failure.message,)
                    raise failure from result
            answers = [result for _, result in results]  # type: ignore[misc]
        stored = await recorder.save(rows, images)
        values: dict[str, list[Any]] = {
            "fake_prob": [a.fake_prob for a in answers],
            "real_prob": [a.real_prob for a in answers],
            "verdict": [a.verdict for a in answers],
            "label": [a.label for a in answers],
            "prediction_id": [row.id if stored else "" for row in rows],
        }
        content, headers = encode_response(
            model_name=answers[0].model_name,
            model_version=answers[0].model_version,
            request_id=parsed.id,
            values=values,
            outputs=parsed.outputs,
            parameters={"request_id": request_id},
        )
        return Response(content, headers=headers)

    infer_errors = _errors(400, 401, 404, 408, 413, 415, 422, 429, 503, 504, 507)
    for suffix, with_version in (("", False), ("/versions/{version}", True)):
        base = "/models/{name}" + suffix
        _add_model_routes(
            router,
            base,
            with_version,
            model_metadata,
            model_ready,
            infer,
            infer_errors,
            limits.max_body_bytes,
        )
    return router


def _add_model_routes(
    router: APIRouter,
    base: str,
    with_version: bool,
    model_metadata: Any,
    model_ready: Any,
    infer: Any,
    infer_errors: dict[int | str, dict[str, Any]],
    max_body_bytes: int,
) -> None:
    """The metadata, readiness and inference routes of a model, or of one of its versions
    (FastAPI needs a function per path signature)."""
    label = "a version of a model" if with_version else "a model (its serving version)"

    if with_version:

        @router.get(
            base,
            response_model=ModelMetadata,
            summary=f"V2: metadata of {label}",
            responses=_errors(401, 404, 429),
        )
        async def metadata_v(
            name: ModelName, version: VersionName, service: ModelServiceDep, _: ApiKeyDep
        ) -> ModelMetadata:
            result: ModelMetadata = await model_metadata(service, name, version)
            return result

        @router.get(
            base + "/ready",
            response_model=ModelReadyResponse,
            summary=f"V2: readiness of {label}",
            responses=_errors(401, 404, 429, 503),
        )
        async def ready_v(
            name: ModelName, version: VersionName, service: ModelServiceDep, _: ApiKeyDep
        ) -> ModelReadyResponse:
            result: ModelReadyResponse = await model_ready(service, name, version)
            return result

        @router.post(
            base + "/infer",
            summary=f"V2: inference on {label}",
            responses=infer_errors | {200: {"description": "The V2 inference response."}},
            openapi_extra=_INFER_BODY,
            max_body_size=max_body_bytes,
        )
        async def infer_v(
            request: Request,
            name: ModelName,
            version: VersionName,
            service: ModelServiceDep,
            recorder: RecorderDep,
            caller: CallerDep,
        ) -> Response:
            result: Response = await infer(request, service, recorder, caller, name, version)
            return result

        return

    @router.get(
        base,
        response_model=ModelMetadata,
        summary=f"V2: metadata of {label}",
        responses=_errors(401, 404, 429),
    )
    async def metadata(name: ModelName, service: ModelServiceDep, _: ApiKeyDep) -> ModelMetadata:
        result: ModelMetadata = await model_metadata(service, name, None)
        return result

    @router.get(
        base + "/ready",
        response_model=ModelReadyResponse,
        summary=f"V2: readiness of {label}",
        responses=_errors(401, 404, 429, 503),
    )
    async def ready(name: ModelName, service: ModelServiceDep, _: ApiKeyDep) -> ModelReadyResponse:
        result: ModelReadyResponse = await model_ready(service, name, None)
        return result

    @router.post(
        base + "/infer",
        summary=f"V2: inference on {label}",
        responses=infer_errors | {200: {"description": "The V2 inference response."}},
        openapi_extra=_INFER_BODY,
        max_body_size=max_body_bytes,
    )
    async def infer_default(
        request: Request,
        name: ModelName,
        service: ModelServiceDep,
        recorder: RecorderDep,
        caller: CallerDep,
    ) -> Response:
        result: Response = await infer(request, service, recorder, caller, name, None)
        return result


_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {"type": "array", "items": {"type": "object"}},
                        "outputs": {"type": "array", "items": {"type": "object"}},
                        "parameters": {"type": "object"},
                    },
                },
                "example": {
                    "id": "42",
                    "inputs": [
                        {
                            "name": INPUT_NAME,
                            "datatype": "BYTES",
                            "shape": [1],
                            "data": ["<base64 of a JPEG or PNG file>"],
                        }
                    ],
                },
            }
        },
    }
}


async def _read_body(request: Request, timeout_s: float) -> bytes:
    """The whole body within ``timeout_s`` (its size is bounded by the route's limit)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.body()
    except TimeoutError as e:
        raise RequestTimeoutError(
            f"the request body was not received within {timeout_s:g} s; check the "
            "connection and send it again"
        ) from e
    except ClientDisconnect as e:
        raise ClientDisconnectedError("the client went away while sending the body") from e
