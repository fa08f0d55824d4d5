"""The project's exceptions: one base class carrying an HTTP status and a machine-readable code.

Every error a user can cause maps to exactly one subclass, so the CLI prints one clear line and
the service answers with one JSON shape, without either having to know the other's cases.
"""

from __future__ import annotations


class VeracityError(Exception):
    """Base of every error this project raises on purpose.

    Attributes:
        status_code: The HTTP status the service answers with when this reaches a client.
        code: A stable, machine-readable identifier (snake_case) for clients to branch on.
    """

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class InvalidImageError(VeracityError):
    """The bytes are not an image this project accepts (corrupt, truncated, wrong format)."""

    status_code = 422
    code = "invalid_image"


class UnsupportedImageFormatError(InvalidImageError):
    """A well-formed image in a format outside the allowlist."""

    status_code = 415
    code = "unsupported_image_format"


class ImageTooLargeError(InvalidImageError):
    """Declared dimensions exceed the pixel limit (decompression-bomb guard)."""

    status_code = 413
    code = "image_too_large"


class InvalidVideoError(VeracityError):
    """The bytes are not a video this project can read (corrupt, truncated, no video)."""

    status_code = 422
    code = "invalid_video"


class UnsupportedVideoFormatError(InvalidVideoError):
    """A container or codec outside the allowlist."""

    status_code = 415
    code = "unsupported_video_format"


class VideoTooLargeError(InvalidVideoError):
    """Declared dimensions, duration or stream count beyond the configured limits."""

    status_code = 413
    code = "video_too_large"


class VideoDecodeTimeoutError(InvalidVideoError):
    """Sampling the frames took longer than the decoding budget (a pathological file)."""

    status_code = 422
    code = "video_decode_timeout"


class PayloadTooLargeError(VeracityError):
    """The uploaded file is larger than the configured upload limit."""

    status_code = 413
    code = "payload_too_large"


class CheckpointError(VeracityError):
    """A checkpoint is missing, malformed, tampered with, or does not match its architecture."""

    code = "checkpoint_error"


class DatasetError(VeracityError):
    """A training dataset does not have the layout or content training needs."""

    code = "dataset_error"


class ConfigurationError(VeracityError):
    """A setting or command-line value is invalid."""

    code = "configuration_error"


class AuthenticationError(VeracityError):
    """Missing or wrong API key."""

    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})


class BadRequestError(VeracityError):
    """A request that is malformed in a way the client can fix (e.g. no file part)."""

    status_code = 400
    code = "bad_request"


class ServiceUnavailableError(VeracityError):
    """The model is not loaded yet, failed to load, or the service is shutting down."""

    status_code = 503
    code = "not_ready"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class ModelNotLoadedError(ServiceUnavailableError):
    """The version asked for is not loaded, and only an admin's load would load it
    (VERACITY_MODEL_LOAD_ON_DEMAND=false): not a wait that passes by itself, so a job
    naming it is refused or failed rather than handed back."""


class JobEndedError(VeracityError):
    """A change to a job that already ended (cancelling a done or failed job)."""

    status_code = 409
    code = "job_ended"


class OverloadedError(ServiceUnavailableError):
    """The admission queue is full: the request is shed at once instead of queueing."""

    code = "overloaded"


class DeadlineExceededError(VeracityError):
    """The request's deadline passed before the model could serve it; it never ran."""

    status_code = 504
    code = "deadline_exceeded"


class RequestTimeoutError(VeracityError):
    """The client did not finish sending its body in time (a trickling or stalled upload)."""

    status_code = 408
    code = "body_timeout"

    def __init__(self, message: str) -> None:
        # The rest of the body may still arrive; it must not be parsed as the next request.
        super().__init__(message, headers={"Connection": "close"})


class ClientDisconnectedError(VeracityError):
    """The client went away before its answer was ready; its work was dropped.

    Nobody reads the response; the status (nginx's 499) is for the access log and metrics.
    """

    status_code = 499
    code = "client_closed_request"


class RateLimitedError(VeracityError):
    """A key went over its request rate or its daily quota."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, code: str = "rate_limited") -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})
        self.code = code


class ForbiddenError(VeracityError):
    """A valid key without the scope a route needs (e.g. admin)."""

    status_code = 403
    code = "forbidden"


class NotFoundError(VeracityError):
    """No such resource, or one the calling key may not see (the two are not told apart,
    so IDs cannot be probed)."""

    status_code = 404
    code = "not_found"


class NoExplanationError(NotFoundError):
    """The prediction exists but has no explanation grid to draw (not asked for, or the
    checkpoint has none)."""

    code = "no_explanation"


class StoreUnavailableError(ServiceUnavailableError):
    """The results database did not answer in time or failed; nothing was changed."""

    code = "store_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after_s=5)


class StoreOutcomeUnknownError(StoreUnavailableError):
    """A change was committing when its deadline passed and the database did not confirm
    it afterwards either: it may have been applied (check, or repeat it idempotently)."""

    code = "store_outcome_unknown"


class InvalidReceiptError(VeracityError):
    """A verdict receipt that is malformed, truncated, forged or signed by an unknown key."""

    status_code = 400
    code = "invalid_receipt"


class ModelNotFoundError(NotFoundError):
    """No such model, or no such version of it, in the model repository."""

    code = "model_not_found"


class ModelLoadError(VeracityError):
    """A version could not be loaded (corrupt, mismatched or missing checkpoint); whatever
    served before still does."""

    status_code = 422
    code = "model_load_failed"


class ModelMemoryError(VeracityError):
    """Loading a version would exceed the model memory budget even after unloading every
    version that may be unloaded."""

    status_code = 507
    code = "model_memory_exceeded"


class ModelConflictError(VeracityError):
    """A lifecycle change that contradicts the current state (unloading the serving version,
    rolling back with no previous version)."""

    status_code = 409
    code = "model_conflict"


class RevisionConflictError(ModelConflictError):
    """A lifecycle change made against a revision of the desired state that another change
    replaced meanwhile (compare-and-set on the revision): nothing was changed."""

    code = "revision_conflict"
