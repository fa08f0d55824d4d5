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
