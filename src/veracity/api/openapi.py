"""The error responses of the OpenAPI document, generated from the error classes.

Each status and code comes from the class in ``veracity.errors`` that a route raises (or,
for what the framework answers itself, from the codes ``api.errors`` gives it), so the
document cannot drift from what a client receives; only the description and the example
message are written here, per route.
"""

from __future__ import annotations

from typing import Any

from veracity.api.errors import HTTP_CODES
from veracity.api.schemas import ErrorResponse, V2ErrorResponse
from veracity.errors import (
    AuthenticationError,
    BadRequestError,
    DeadlineExceededError,
    ForbiddenError,
    InvalidImageError,
    InvalidReceiptError,
    InvalidVideoError,
    JobEndedError,
    ModelConflictError,
    ModelLoadError,
    ModelMemoryError,
    ModelNotFoundError,
    NoExplanationError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    ServiceUnavailableError,
    StoreUnavailableError,
    UnsupportedImageFormatError,
    UnsupportedVideoFormatError,
    VeracityError,
    VideoTooLargeError,
)

Responses = dict[int | str, dict[str, Any]]

_EXAMPLE_REQUEST_ID = "5f0c7a6e2b9d4c1e8a3f6b7d9e0a1c2b"


def _response(status: int, code: str, description: str, message: str) -> tuple[int, dict[str, Any]]:
    # Each status shows what a client actually receives for it (Swagger UI otherwise shows
    # the ErrorResponse model's single example under every status).
    example = {"error": {"code": code, "message": message, "request_id": _EXAMPLE_REQUEST_ID}}
    return status, {
        "model": ErrorResponse,
        "description": description,
        "content": {"application/json": {"example": example}},
    }


def documented(error: type[VeracityError], description: str, message: str) -> Responses:
    """The response for ``error`` (its status and code), with an example ``message``."""
    status, response = _response(error.status_code, error.code, description, message)
    return {status: response}


def framework(status: int, description: str, message: str) -> Responses:
    """The response for a status the framework answers itself (e.g. 422 validation_error)."""
    _, response = _response(status, HTTP_CODES[status], description, message)
    return {status: response}


def v2_errors(*statuses: int) -> Responses:
    """The Open Inference Protocol's routes answer ``{"error": "message"}``."""
    return {status: {"model": V2ErrorResponse} for status in statuses}


def only(responses: Responses, *statuses: int) -> Responses:
    return {status: response for status, response in responses.items() if status in statuses}


UNAUTHORIZED = documented(
    AuthenticationError,
    "Missing, invalid, duplicated or misplaced API key (send exactly one X-API-Key "
    "header; never the query string or Authorization).",
    "missing API key: send it in the X-API-Key header",
)
RATE_LIMITED = documented(
    RateLimitedError,
    "The key's rate limit or daily quota is used up (see Retry-After).",
    "rate limit of 20 per 1 second exceeded for this key; retry after the delay in Retry-After",
)
MEMORY_EXCEEDED = documented(
    ModelMemoryError,
    "The version asked for is not loaded and does not fit the model memory budget.",
    "detector/9 needs about 900 MB but only 300 MB of the 1024 MB budget can be freed",
)
NOT_LOADED = documented(
    ServiceUnavailableError, "Not loaded yet.", "the model is still loading; retry shortly"
)
AUTH_ERRORS: Responses = UNAUTHORIZED | RATE_LIMITED

INFER_ERRORS: Responses = (
    documented(
        BadRequestError,
        "Malformed multipart body, no 'file' part, or more than one file part.",
        "no complete 'file' part: send the image as multipart/form-data field 'file', "
        "ending the body with the closing boundary",
    )
    | UNAUTHORIZED
    | documented(
        RequestTimeoutError,
        "The body was not received within VERACITY_BODY_TIMEOUT_S.",
        "the request body was not received within 30 s; check the connection and send the "
        "image again",
    )
    | documented(
        PayloadTooLargeError,
        "Body above VERACITY_MAX_UPLOAD_MB, or image above the pixel limit.",
        "the file exceeds the 10 MB upload limit; send a smaller image",
    )
    | documented(
        UnsupportedImageFormatError,
        "An image format outside the allowlist (e.g. TIFF, PSD, PDF).",
        "image format TIFF is not accepted; send one of: JPEG, PNG, WEBP, BMP, GIF",
    )
    | documented(
        InvalidImageError,
        "Bytes that are not a readable image, or an invalid query parameter.",
        "not a readable image; send one of: JPEG, PNG, WEBP, BMP, GIF",
    )
    | RATE_LIMITED
    | documented(
        VeracityError,
        "Unexpected server error; quote the request_id.",
        "internal server error; quote the request_id when reporting it",
    )
    | documented(
        OverloadedError,
        "Queue full (overloaded), model not loaded yet or failed, or shutting down "
        "(see Retry-After).",
        "the service is at capacity (32 requests queued); retry after the delay in "
        "Retry-After, or on another replica",
    )
    | documented(
        DeadlineExceededError,
        "Not served within VERACITY_REQUEST_TIMEOUT_S; the work was dropped.",
        "not served within the 10 s deadline (VERACITY_REQUEST_TIMEOUT_S) because the "
        "service is busy; retry later or on another replica",
    )
    | documented(
        ModelNotFoundError,
        "The model or version named by `model` / `model_version` is not in the repository.",
        "model 'detector' has no usable version '9'; GET /models lists its versions",
    )
    | MEMORY_EXCEEDED
)
VIDEO_ERRORS: Responses = (
    INFER_ERRORS
    | documented(
        VideoTooLargeError,
        "Body above VERACITY_VIDEO_MAX_UPLOAD_MB, or the video is longer than "
        "VERACITY_VIDEO_MAX_DURATION_S, has larger frames or more streams than allowed, or "
        "asks for too many frames.",
        "the video lasts 312.0 s; at most 180 s are analysed in one request. Send a shorter clip.",
    )
    | documented(
        UnsupportedVideoFormatError,
        "A container or codec outside the allowlist.",
        "not an MP4, MOV, WebM or MKV file; send a video in one of those containers",
    )
    | documented(
        InvalidVideoError,
        "Not a readable video (truncated, corrupt, no video stream), too costly to decode "
        "within VERACITY_VIDEO_DECODE_TIMEOUT_S, or an invalid query parameter.",
        "the file has no video stream (audio only or data only); send a video",
    )
)
NO_SUCH_PREDICTION = documented(
    NotFoundError,
    "No such prediction for this key (another key's predictions are not shown), or the "
    "deployment keeps no store.",
    "no prediction 'abc' for this key; IDs are the prediction_id of an answer (GET "
    "/predictions?request_id=... finds a request's), and a key sees only its own "
    "predictions",
)
_NO_EXPLANATION = documented(
    NoExplanationError,
    "",
    "prediction 'abc' has no explanation grid: ask POST /infer with explain=true",
)[404]
# Two codes share 404 here: both examples, one description.
NO_EXPLANATION: Responses = {
    404: {
        "model": ErrorResponse,
        "description": "not_found: no such prediction for this key (another key's are not "
        "shown), or no store. no_explanation: the prediction has no grid (not asked for "
        "with ?explain=true, or the checkpoint has none: explanation.reason says why).",
        "content": {
            "application/json": {
                "examples": {
                    "not_found": {
                        "value": NO_SUCH_PREDICTION[404]["content"]["application/json"]["example"]
                    },
                    "no_explanation": {
                        "value": _NO_EXPLANATION["content"]["application/json"]["example"]
                    },
                }
            }
        },
    }
}
INVALID_BODY = framework(
    422,
    "A body or parameter that fails validation (e.g. a label other than real or fake, "
    "a note over 2000 characters).",
    "body.label: Input should be 'real' or 'fake'",
)
STORE_ERRORS: Responses = (
    documented(
        BadRequestError,
        "A malformed cursor or query parameter.",
        "the cursor is not one this service gave; pass next_cursor from the previous page "
        "unchanged, or leave it out to start from the newest",
    )
    | UNAUTHORIZED
    | documented(
        ForbiddenError,
        "The route or filter needs a key with the admin scope.",
        "filtering by key_id needs an admin key; an ordinary key lists its own predictions "
        "(leave key_id out)",
    )
    | NO_SUCH_PREDICTION
    | INVALID_BODY
    | RATE_LIMITED
    | documented(
        StoreUnavailableError,
        "The results database did not answer in time; nothing was changed (see Retry-After).",
        "the results store is unavailable (get failed); nothing was changed, retry shortly",
    )
)
MODEL_ERRORS: Responses = (
    UNAUTHORIZED
    | documented(
        ForbiddenError,
        "Managing models needs a key with the admin scope.",
        "this route needs a key with the admin scope (VERACITY_ADMIN_API_KEYS); this key may "
        "use the models but not manage them",
    )
    | documented(
        ModelNotFoundError,
        "No such model or version (or, to unload, not loaded).",
        "no model named 'detector'; GET /models lists the models this service has",
    )
    | documented(
        ModelConflictError,
        "The change contradicts the current state (unloading a version that takes traffic, "
        "rolling back with no previous version).",
        "model 'detector' has no previous version to roll back to",
    )
    | documented(
        ModelLoadError,
        "The version's checkpoint is corrupt, mismatched or missing (what served before "
        "still does), or the body fails validation.",
        "detector/2 failed to load; what served before still does: weights file ... has "
        "SHA-256 ..., but its metadata records ...",
    )
    | RATE_LIMITED
    | NOT_LOADED
    | MEMORY_EXCEEDED
)
JOB_ENDED = documented(
    JobEndedError,
    "The job already ended (done or failed); its outcome stands.",
    "the job already ended (done); there is nothing to cancel",
)
INVALID_RECEIPT = documented(
    InvalidReceiptError,
    "A forged, truncated or foreign receipt.",
    "the receipt's signature does not verify with the given keys (BadSignatureError)",
)


def upload_schema(field: str, description: str, *, many: bool) -> dict[str, Any]:
    """The multipart request body of an upload route (read by the route, not by FastAPI)."""
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
