"""The HTTP endpoints: /infer, /health, /ready, /model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from veracity.answers import BatchResponse, InferResponse, ThresholdsModel, VideoResponse
from veracity.api.deps import (
    ApiKeyDep,
    CallerDep,
    ModelChoiceDep,
    ModelServiceDep,
    RecorderDep,
    SignerDep,
)
from veracity.api.middleware import BODY_BUDGET
from veracity.api.schemas import (
    ErrorResponse,
    HealthResponse,
    ModelResponse,
    PreprocessInfo,
    ReadyResponse,
    ReceiptCheck,
    ReceiptToCheck,
)
from veracity.errors import (
    BadRequestError,
    ClientDisconnectedError,
    NotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
)
from veracity.receipts import ReceiptSigner
from veracity.serving.judging import batch_answer, finished, judge_batch, judge_image, judge_video
from veracity.serving.service import ModelService
from veracity.video.aggregate import AggregationMethod, AggregationRule
from veracity.video.plan import SamplingPlan

T = TypeVar("T")

# Multipart overhead allowed on top of the image itself (boundaries, part headers).
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# An upload is one file part; a few text fields are tolerated (some clients add them).
MAX_FORM_FIELDS = 4
# Text fields are held in memory, so each is capped. (python-multipart caps each part's
# header lines at about 4 KB and 8 headers.)
MAX_FIELD_BYTES = 8 * 1024


def upload_schema(field: str, description: str, *, many: bool) -> dict[str, Any]:
    file_schema: dict[str, Any] = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": file_schema} if many else file_schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [field],
                        "properties": {field: schema | {"description": description}},
                    }
                }
            },
        }
    }


_UPLOAD_SCHEMA = upload_schema(
    "file", "The image: JPEG, PNG, WebP, BMP or GIF (first frame).", many=False
)


def error_response(description: str, code: str, message: str) -> dict[str, Any]:
    """An error response for the OpenAPI document, with its own example.

    Each status shows what a client actually receives for it (Swagger UI otherwise shows
    the ErrorResponse model's single example under every status).
    """
    example = {
        "error": {
            "code": code,
            "message": message,
            "request_id": "5f0c7a6e2b9d4c1e8a3f6b7d9e0a1c2b",
        }
    }
    return {
        "model": ErrorResponse,
        "description": description,
        "content": {"application/json": {"example": example}},
    }


INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_response(
        "Malformed multipart body, no 'file' part, or more than one file part.",
        "bad_request",
        "no complete 'file' part: send the image as multipart/form-data field 'file', "
        "ending the body with the closing boundary",
    ),
    401: error_response(
        "Missing, invalid, duplicated or misplaced API key (send exactly one X-API-Key "
        "header; never the query string or Authorization).",
        "unauthorized",
        "missing API key: send it in the X-API-Key header",
    ),
    408: error_response(
        "The body was not received within VERACITY_BODY_TIMEOUT_S.",
        "body_timeout",
        "the request body was not received within 30 s; check the connection and send the "
        "image again",
    ),
    413: error_response(
        "Body above VERACITY_MAX_UPLOAD_MB, or image above the pixel limit.",
        "payload_too_large",
        "the file exceeds the 10 MB upload limit; send a smaller image",
    ),
    415: error_response(
        "An image format outside the allowlist (e.g. TIFF, PSD, PDF).",
        "unsupported_image_format",
        "image format TIFF is not accepted; send one of: JPEG, PNG, WEBP, BMP, GIF",
    ),
    422: error_response(
        "Bytes that are not a readable image, or an invalid query parameter.",
        "invalid_image",
        "not a readable image; send one of: JPEG, PNG, WEBP, BMP, GIF",
    ),
    429: error_response(
        "The key's rate limit or daily quota is used up (see Retry-After).",
        "rate_limited",
        "rate limit of 20 per 1 second exceeded for this key; retry after the delay in Retry-After",
    ),
    500: error_response(
        "Unexpected server error; quote the request_id.",
        "internal_error",
        "internal server error; quote the request_id when reporting it",
    ),
    503: error_response(
        "Queue full (overloaded), model not loaded yet or failed, or shutting down "
        "(see Retry-After).",
        "overloaded",
        "the service is at capacity (32 requests queued); retry after the delay in "
        "Retry-After, or on another replica",
    ),
    504: error_response(
        "Not served within VERACITY_REQUEST_TIMEOUT_S; the work was dropped.",
        "deadline_exceeded",
        "not served within the 10 s deadline (VERACITY_REQUEST_TIMEOUT_S) because the "
        "service is busy; retry later or on another replica",
    ),
    404: error_response(
        "The model or version named by `model` / `model_version` is not in the repository.",
        "model_not_found",
        "model 'detector' has no usable version '9'; GET /models lists its versions",
    ),
    507: error_response(
        "The version asked for is not loaded and does not fit the model memory budget.",
        "model_memory_exceeded",
        "detector/9 needs about 900 MB but only 300 MB of the 1024 MB budget can be freed",
    ),
}
VIDEO_ERRORS: dict[int | str, dict[str, Any]] = INFER_ERRORS | {
    413: error_response(
        "Body above VERACITY_VIDEO_MAX_UPLOAD_MB, or the video is longer than "
        "VERACITY_VIDEO_MAX_DURATION_S, has larger frames or more streams than allowed, or "
        "asks for too many frames.",
        "video_too_large",
        "the video lasts 312.0 s; at most 180 s are analysed in one request. Send a shorter clip.",
    ),
    415: error_response(
        "A container or codec outside the allowlist.",
        "unsupported_video_format",
        "not an MP4, MOV, WebM or MKV file; send a video in one of those containers",
    ),
    422: error_response(
        "Not a readable video (truncated, corrupt, no video stream), too costly to decode "
        "within VERACITY_VIDEO_DECODE_TIMEOUT_S, or an invalid query parameter.",
        "invalid_video",
        "the file has no video stream (audio only or data only); send a video",
    ),
}
STORE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_response(
        "A malformed cursor or query parameter.",
        "bad_request",
        "the cursor is not one this service gave; pass next_cursor from the previous page "
        "unchanged, or leave it out to start from the newest",
    ),
    401: INFER_ERRORS[401],
    403: error_response(
        "The route or filter needs a key with the admin scope.",
        "forbidden",
        "filtering by key_id needs an admin key; an ordinary key lists its own predictions "
        "(leave key_id out)",
    ),
    404: error_response(
        "No such prediction for this key (another key's predictions are not shown), or the "
        "deployment keeps no store.",
        "not_found",
        "no prediction 'abc' for this key; IDs are the prediction_id of an answer (GET "
        "/predictions?request_id=... finds a request's), and a key sees only its own "
        "predictions",
    ),
    422: error_response(
        "A body or parameter that fails validation (e.g. a label other than real or fake, "
        "a note over 2000 characters).",
        "validation_error",
        "body.label: Input should be 'real' or 'fake'",
    ),
    429: INFER_ERRORS[429],
    503: error_response(
        "The results database did not answer in time; nothing was changed (see Retry-After).",
        "store_unavailable",
        "the results store is unavailable (get failed); nothing was changed, retry shortly",
    ),
}
MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    401: INFER_ERRORS[401],
    403: error_response(
        "Managing models needs a key with the admin scope.",
        "forbidden",
        "this route needs a key with the admin scope (VERACITY_ADMIN_API_KEYS); this key may "
        "use the models but not manage them",
    ),
    404: error_response(
        "No such model or version (or, to unload, not loaded).",
        "model_not_found",
        "no model named 'detector'; GET /models lists the models this service has",
    ),
    409: error_response(
        "The change contradicts the current state (unloading a version that takes traffic, "
        "rolling back with no previous version).",
        "model_conflict",
        "model 'detector' has no previous version to roll back to",
    ),
    422: error_response(
        "The version's checkpoint is corrupt, mismatched or missing (what served before "
        "still does), or the body fails validation.",
        "model_load_failed",
        "detector/2 failed to load; what served before still does: weights file ... has "
        "SHA-256 ..., but its metadata records ...",
    ),
    429: INFER_ERRORS[429],
    503: error_response(
        "Not loaded yet.", "not_ready", "the model is still loading; retry shortly"
    ),
    507: INFER_ERRORS[507],
}
NOT_LOADED = error_response(
    "Not loaded yet.", "not_ready", "the model is still loading; retry shortly"
)
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: INFER_ERRORS[401],
    429: INFER_ERRORS[429],
}


def hold_body(request: Request, service: ModelService) -> None:
    """Count this request's body against the replica's body budget, as it arrives, until
    the request is answered (``BodyBudgetMiddleware`` counts and releases). Call it after
    auth and admission, right before reading the body.
    """
    request.scope.setdefault("state", {})[BODY_BUDGET] = service.admission


async def read_upload(
    request: Request, *, max_image_bytes: int, timeout_s: float, noun: str = "image"
) -> bytes:
    """Receive and parse the multipart body within ``timeout_s``; return the file's bytes.

    Raises:
        RequestTimeoutError: the body took longer than ``timeout_s`` (a trickling client).
        ClientDisconnectedError: the client went away mid-upload.
        BadRequestError, PayloadTooLargeError: the body is malformed or too large.
    """
    files = await read_uploads(
        request,
        field="file",
        max_files=1,
        max_file_bytes=max_image_bytes,
        timeout_s=timeout_s,
        noun=noun,
    )
    return files[0][1]


async def read_uploads(
    request: Request,
    *,
    field: str,
    max_files: int,
    max_file_bytes: int,
    timeout_s: float,
    noun: str = "image",
) -> list[tuple[str | None, bytes]]:
    """Receive the multipart body within ``timeout_s``; return each ``field`` file's name
    and bytes (at most ``max_files`` of at most ``max_file_bytes`` each). The body as a
    whole is bounded by the route's ``max_body_size``.

    Raises:
        RequestTimeoutError, ClientDisconnectedError, BadRequestError, PayloadTooLargeError.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_uploads(
                request,
                field=field,
                max_files=max_files,
                max_file_bytes=max_file_bytes,
                noun=noun,
            )
    except TimeoutError as e:
        raise RequestTimeoutError(
            f"the request body was not received within {timeout_s:g} s; check the "
            f"connection and send the {noun} again"
        ) from e
    except ClientDisconnect as e:
        raise ClientDisconnectedError("the client disconnected during the upload") from e


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, but cancel it as soon as the client disconnects.

    Cancelling frees the request's admission slot and drops its queued work. Starlette
    only notices a disconnect when it next reads the request, so it is watched here: once
    the body is read, ``receive()`` returns only when the client goes away (or the
    response is complete).

    Raises:
        ClientDisconnectedError: the client went away first.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        watcher.cancel()
        raise
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    # The work's own outcome (a result, an error, or the cancellation) no longer matters.
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await task
    raise ClientDisconnectedError("the client disconnected before the answer was ready")


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _read_uploads(
    request: Request, *, field: str, max_files: int, max_file_bytes: int, noun: str
) -> list[tuple[str | None, bytes]]:
    what = "the image" if noun == "image" else f"the {noun}"
    try:
        form = await request.form(
            max_files=max_files, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
        )
    except HTTPException as e:
        if e.status_code != 400:
            raise
        raise BadRequestError(
            f"the multipart body was refused ({e.detail.rstrip('.')}); send {what} as "
            f"field {field!r} of a multipart/form-data request, at most {max_files} "
            f"file(s), at most {MAX_FORM_FIELDS} fields of at most "
            f"{MAX_FIELD_BYTES // 1024} KB each, part header lines under 4 KB"
        ) from e
    try:
        uploads = form.getlist(field)
        if not uploads:
            raise BadRequestError(
                f"no complete {field!r} part: send {what} as multipart/form-data field "
                f"{field!r}, ending the body with the closing boundary"
            ) from None
        files: list[tuple[str | None, bytes]] = []
        for upload in uploads:
            if not isinstance(upload, UploadFile):
                raise BadRequestError(f"the {field!r} part must be a file upload, not a text field")
            # One byte past the limit is enough to know the file is too large; the body
            # limit leaves room for multipart overhead, so each file is checked here.
            data = await upload.read(max_file_bytes + 1)
            if len(data) > max_file_bytes:
                name = f" {upload.filename!r}" if max_files > 1 and upload.filename else ""
                raise PayloadTooLargeError(
                    f"the file{name} exceeds the {max_file_bytes / (1024 * 1024):g} MB upload "
                    f"limit; send a smaller {noun}"
                )
            if not data and max_files == 1:
                raise BadRequestError("the uploaded file is empty")
            files.append((upload.filename, data))
    finally:
        await form.close()
    return files


async def served(request: Request, service: ModelService, work: Awaitable[T]) -> T:
    """``until_disconnected``, counting a hang-up as work shed (every model route)."""
    try:
        return await until_disconnected(request, work)
    except ClientDisconnectedError:
        service.record_shed("client_disconnected")
        raise


@dataclass(frozen=True)
class RouteLimits:
    """What the routes need from Settings (built once by the app)."""

    max_upload_bytes: int
    body_timeout_s: float
    video_max_upload_bytes: int = 64 * 1024 * 1024
    video_frames: int = 32
    video_aggregation: AggregationMethod = "confident"
    batch_max_files: int = 16
    batch_max_upload_bytes: int = 64 * 1024 * 1024


def _receipts_on(signer: ReceiptSigner | None) -> ReceiptSigner:
    if signer is None:
        raise NotFoundError("this deployment signs no receipts (no VERACITY_RECEIPT_SIGNING_KEY)")
    return signer


def build_router(limits: RouteLimits) -> APIRouter:
    """The API's routes; limits come from settings, so the router is built per app."""
    router = APIRouter()
    max_upload_bytes, body_timeout_s = limits.max_upload_bytes, limits.body_timeout_s

    @router.post(
        "/infer",
        response_model=InferResponse,
        summary="Classify one image as real, manipulated or inconclusive",
        description="Answers a calibrated `fake_prob` and a `verdict` with `reasons`. "
        "`inconclusive` means the model cannot judge this input (out of distribution, too "
        "small, too compressed, uniform, unstable) or its probability lies between the "
        "deployment's operating points. See the README's 'How to read a verdict'.",
        responses=INFER_ERRORS,
        openapi_extra=_UPLOAD_SCHEMA,
        max_body_size=max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )
    async def infer(
        request: Request,
        service: ModelServiceDep,
        recorder: RecorderDep,
        signer: SignerDep,
        caller: CallerDep,
        choice: ModelChoiceDep,
        robustness_check: bool | None = Query(
            default=None,
            description="Also score the image re-encoded as JPEG 75 and halved (about 3x the "
            "compute) and report `stability`; a verdict that flips becomes inconclusive / "
            "unstable. Default: the deployment's VERACITY_ROBUSTNESS_CHECK.",
        ),
    ) -> InferResponse:
        # Auth and rate limits (a dependency) and admission run before the body is read,
        # so a client that would be refused anyway uploads nothing.
        service.check_admission()
        hold_body(request, service)
        data = await read_upload(
            request, max_image_bytes=max_upload_bytes, timeout_s=body_timeout_s
        )
        request_id: str = request.state.request_id
        answer, row = await judge_image(
            service,
            recorder,
            caller,
            data,
            request_id=request_id,
            robustness_check=robustness_check,
            run=lambda work: served(request, service, work),
            model=choice.model,
            version=choice.version,
        )
        return finished(answer, row, await recorder.save([row], [data]), signer)

    @router.post(
        "/infer/video",
        response_model=VideoResponse,
        summary="Judge a video: a verdict, a timeline of sampled frames, suspicious segments",
        description="Samples frames (evenly spaced, or one every `every_s` seconds), judges "
        "each like an image, and aggregates them (default: the DFDC-winning 'confident' "
        "rule). MP4, MOV, WebM or MKV with H.264, HEVC, VP8, VP9 or AV1, up to "
        "VERACITY_VIDEO_MAX_DURATION_S. See the README's 'Video'.",
        responses=VIDEO_ERRORS,
        openapi_extra=upload_schema("file", "The video: MP4, MOV, WebM or MKV.", many=False),
        max_body_size=limits.video_max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )
    async def infer_video(
        request: Request,
        service: ModelServiceDep,
        recorder: RecorderDep,
        signer: SignerDep,
        caller: CallerDep,
        choice: ModelChoiceDep,
        frames: int | None = Query(
            default=None,
            ge=1,
            le=1024,
            description="Evenly spaced frames to analyse (default VERACITY_VIDEO_FRAMES).",
        ),
        every_s: float | None = Query(
            default=None,
            gt=0,
            le=3600,
            description="Analyse one frame every this many seconds instead of `frames`.",
        ),
        aggregation: Annotated[
            AggregationMethod | None,
            Query(
                description="confident (default), mean, max or top_k: how frame "
                "probabilities become the video's."
            ),
        ] = None,
    ) -> VideoResponse:
        service.check_admission()
        hold_body(request, service)
        data = await read_upload(
            request,
            max_image_bytes=limits.video_max_upload_bytes,
            timeout_s=body_timeout_s,
            noun="video",
        )
        plan = SamplingPlan(count=frames or limits.video_frames, every_s=every_s)
        rule = AggregationRule(method=aggregation or limits.video_aggregation)
        request_id: str = request.state.request_id
        answer, row = await judge_video(
            service,
            recorder,
            caller,
            data,
            request_id=request_id,
            plan=plan,
            rule=rule,
            run=lambda work: served(request, service, work),
            model=choice.model,
            version=choice.version,
        )
        return finished(answer, row, await recorder.save([row], [data]), signer)

    @router.post(
        "/infer/batch",
        response_model=BatchResponse,
        summary="Classify several images in one request; each item answers on its own",
        description="Up to VERACITY_BATCH_MAX_FILES files in the multipart field `files`. "
        "An item that is not an accepted image gets its own `error` (the error shape's "
        "code and message) and the others are still judged; the request itself fails "
        "only for what concerns all items (auth, size, overload).",
        responses=INFER_ERRORS,
        openapi_extra=upload_schema("files", "The images (repeat the field).", many=True),
        max_body_size=limits.batch_max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )
    async def infer_batch(
        request: Request,
        service: ModelServiceDep,
        recorder: RecorderDep,
        signer: SignerDep,
        caller: CallerDep,
        choice: ModelChoiceDep,
        robustness_check: bool | None = Query(default=None),
    ) -> BatchResponse:
        service.check_admission()
        hold_body(request, service)
        files = await read_uploads(
            request,
            field="files",
            max_files=limits.batch_max_files,
            max_file_bytes=max_upload_bytes,
            timeout_s=body_timeout_s,
        )
        request_id: str = request.state.request_id
        answers, rows = await judge_batch(
            service,
            recorder,
            caller,
            files,
            request_id=request_id,
            robustness_check=robustness_check,
            run=lambda work: served(request, service, work),
            model=choice.model,
            version=choice.version,
        )
        stored = await recorder.save(rows, [data for _, data in files])
        return batch_answer(request_id, answers, rows, stored, signer)

    @router.get(
        "/.well-known/jwks.json",
        summary="The public keys that verify verdict receipts (JWKS)",
        description="The current signing key and earlier ones kept for verification "
        "(VERACITY_RECEIPT_VERIFY_KEYS); a receipt's `kid` names its key. 404 when the "
        "deployment signs no receipts.",
        responses={404: STORE_ERRORS[404]},
    )
    async def jwks(signer: SignerDep) -> dict[str, Any]:
        return _receipts_on(signer).jwks()

    @router.post(
        "/receipts/verify",
        response_model=ReceiptCheck,
        summary="Check a verdict receipt against this deployment's published keys",
        description="The same check as `veracity verify-receipt`, for clients without the "
        "CLI: 200 with the claims when a published key signed it (and, given "
        "`input_sha256`, whether it is about those bytes); 400 `invalid_receipt` otherwise.",
        responses={
            400: error_response(
                "A forged, truncated or foreign receipt.",
                "invalid_receipt",
                "the receipt's signature does not verify with the given keys (BadSignatureError)",
            ),
            404: STORE_ERRORS[404],
            422: STORE_ERRORS[422],
        },
    )
    async def verify(body: ReceiptToCheck, signer: SignerDep) -> ReceiptCheck:
        claims = _receipts_on(signer).verify(body.receipt)
        same = (
            None if body.input_sha256 is None else claims.get("input_sha256") == body.input_sha256
        )
        return ReceiptCheck(valid=True, claims=claims, matches_input=same)

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
        responses=AUTH_ERRORS | {503: NOT_LOADED},
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

    return router
