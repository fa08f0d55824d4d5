"""The Open Inference Protocol (V2) over REST: what Triton's and KServe's clients call.

Health and readiness are open (probes); metadata and inference take the same X-API-Key as
/infer. Inference runs the same path as /infer and /infer/batch (admission, the cache, the
store, shadow scores), so a V2 answer is recorded, cached and comparable like any other.
Errors on these routes are ``{"error": "message"}``, which the protocol's clients read.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse

from veracity import __version__
from veracity.answers import InferResponse
from veracity.api.deps import ApiKeyDep, ModelServiceDep, RecorderDep
from veracity.api.openapi import v2_errors
from veracity.api.uploads import Upload, UploadDep
from veracity.api.v2 import (
    LiveResponse,
    ModelMetadata,
    ModelReadyResponse,
    ReadyResponse,
    ServerMetadata,
    TensorMetadata,
)
from veracity.errors import VeracityError
from veracity.oip.codec import (
    HEADER_LENGTH,
    INPUT_NAME,
    OUTPUTS,
    Limits,
    encode_response,
    parse_request,
)
from veracity.provenance.reader import CredentialReader
from veracity.repository.layout import NAME_PATTERN
from veracity.serving.judging import judge_batch, judge_image
from veracity.serving.recording import Recorder
from veracity.serving.service import ModelService

ModelName = Annotated[str, Path(pattern=NAME_PATTERN)]
VersionName = Annotated[str, Path(pattern=NAME_PATTERN)]


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


router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
INFER_ERRORS = v2_errors(400, 401, 404, 408, 413, 415, 422, 429, 503, 504, 507)
_MODEL = "a model (its serving version)"
_VERSION = "a version of a model"


@router.get(
    "/health/live",
    response_model=LiveResponse,
    summary="V2: the server is live; 503 when its default model failed to load",
    responses={503: {"model": LiveResponse}},
)
async def live(service: ModelServiceDep) -> Response:
    # As /health: a failed load is what a restart can cure; loading is not.
    alive = service.state != "failed"
    return JSONResponse(LiveResponse(live=alive).model_dump(), status_code=200 if alive else 503)


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
    responses=v2_errors(401, 429),
)
async def server_metadata(_: ApiKeyDep) -> ServerMetadata:
    return ServerMetadata(name="veracity", version=__version__, extensions=["binary_tensor_data"])


# Each model route is declared for a model (its serving version) and for one named version:
# FastAPI needs a function per path signature; both call the one implementation below.


@router.get(
    "/models/{name}",
    response_model=ModelMetadata,
    summary=f"V2: metadata of {_MODEL}",
    responses=v2_errors(401, 404, 429),
)
async def model_metadata(name: ModelName, service: ModelServiceDep, _: ApiKeyDep) -> ModelMetadata:
    return _metadata(service, name, None)


@router.get(
    "/models/{name}/ready",
    response_model=ModelReadyResponse,
    summary=f"V2: readiness of {_MODEL}",
    responses=v2_errors(401, 404, 429, 503),
)
async def model_ready(
    name: ModelName, service: ModelServiceDep, _: ApiKeyDep
) -> ModelReadyResponse:
    return _readiness(service, name, None)


@router.post(
    "/models/{name}/infer",
    summary=f"V2: inference on {_MODEL}",
    responses=INFER_ERRORS | {200: {"description": "The V2 inference response."}},
    openapi_extra=_INFER_BODY,
)
async def model_infer(name: ModelName, upload: UploadDep, recorder: RecorderDep) -> Response:
    return await _infer(upload, recorder, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    summary=f"V2: metadata of {_VERSION}",
    responses=v2_errors(401, 404, 429),
)
async def version_metadata(
    name: ModelName, version: VersionName, service: ModelServiceDep, _: ApiKeyDep
) -> ModelMetadata:
    return _metadata(service, name, version)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=ModelReadyResponse,
    summary=f"V2: readiness of {_VERSION}",
    responses=v2_errors(401, 404, 429, 503),
)
async def version_ready(
    name: ModelName, version: VersionName, service: ModelServiceDep, _: ApiKeyDep
) -> ModelReadyResponse:
    return _readiness(service, name, version)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary=f"V2: inference on {_VERSION}",
    responses=INFER_ERRORS | {200: {"description": "The V2 inference response."}},
    openapi_extra=_INFER_BODY,
)
async def version_infer(
    name: ModelName, version: VersionName, upload: UploadDep, recorder: RecorderDep
) -> Response:
    return await _infer(upload, recorder, name, version)


def _metadata(service: ModelService, name: str, version: str | None) -> ModelMetadata:
    return ModelMetadata(
        name=name,
        versions=service.versions(name, version),
        platform="veracity",
        inputs=[TensorMetadata(name=INPUT_NAME, datatype="BYTES", shape=[-1])],
        outputs=[
            TensorMetadata(name=output, datatype=datatype, shape=[-1])
            for output, datatype in OUTPUTS.items()
        ],
    )


def _readiness(service: ModelService, name: str, version: str | None) -> ModelReadyResponse:
    service.require_loaded(name, version)
    return ModelReadyResponse(name=name, ready=True)


async def _infer(upload: Upload, recorder: Recorder, name: str, version: str | None) -> Response:
    service = upload.service
    upload.admit()
    service.check_model(name, version)
    body = await upload.body()
    limit = upload.limit
    codec_limits = Limits(max_items=limit.max_files, max_item_bytes=limit.max_file_bytes)
    parsed = parse_request(body, upload.request.headers.get(HEADER_LENGTH), codec_limits)
    context = upload.context(name, version)
    images = parsed.images
    # The verdict tensor is the answer's verdict: the content credentials count here too.
    credentials: CredentialReader = upload.request.app.state.credentials
    if len(images) == 1:
        answer, row = await judge_image(
            service, recorder, context, images[0], robustness_check=None, credentials=credentials
        )
        answers, rows = [answer], [row]
    else:
        results, rows = await judge_batch(
            service,
            recorder,
            context,
            [(None, data) for data in images],
            robustness_check=None,
            credentials=credentials,
        )
        answers = [_item_answer(index, result) for index, (_, result) in enumerate(results)]
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
        parameters={"request_id": context.request_id},
    )
    return Response(content, headers=headers)


def _item_answer(index: int, result: InferResponse | VeracityError) -> InferResponse:
    # The protocol has no per-element errors: the first bad image fails all.
    if isinstance(result, VeracityError):
        # A copy keeps the error's status, code and headers (Retry-After); some error
        # classes take more than a message to construct.
        failure = copy.copy(result)
        failure.message = f"element {index} of input 'image': {result.message}"
        failure.args = (failure.message,)
        raise failure from result
    return result
