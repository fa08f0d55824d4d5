"""The body limits of the upload routes: one table, read by the length guard (which refuses a
declared oversize body before routing), the byte counter (chunked bodies) and the routes
(each file's limit while reading)."""

from __future__ import annotations

from dataclasses import dataclass, field

from veracity.settings import Settings

# Multipart overhead allowed on top of the files themselves (boundaries, part headers).
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class BodyLimit:
    """``max_bytes`` bounds the whole body; ``message`` is the 413 for a body above it."""

    max_bytes: int
    message: str
    field: str = "file"
    max_files: int = 1
    max_file_bytes: int = 0
    noun: str = "image"


@dataclass(frozen=True)
class BodyLimits:
    """``routes``: path -> its limit; a key ending in "/" applies to every path under it.
    Paths not in it get ``default`` from the length guard, and no byte counter."""

    default: BodyLimit
    body_timeout_s: float
    routes: dict[str, BodyLimit] = field(default_factory=dict)

    def route(self, path: str) -> BodyLimit | None:
        if path in self.routes:
            return self.routes[path]
        for prefix, limit in self.routes.items():
            if prefix.endswith("/") and path.startswith(prefix):
                return limit
        return None

    def of(self, path: str) -> BodyLimit:
        return self.route(path) or self.default


def _multipart(
    files_bytes: int,
    message: str,
    *,
    max_file_bytes: int,
    field: str = "file",
    max_files: int = 1,
    noun: str = "image",
) -> BodyLimit:
    return BodyLimit(
        files_bytes + MULTIPART_OVERHEAD_BYTES, message, field, max_files, max_file_bytes, noun
    )


def body_limits(settings: Settings) -> BodyLimits:
    """The table for ``settings``."""
    image = settings.max_upload_bytes
    video = settings.video_max_upload_bytes
    image_limit = _multipart(
        image,
        f"request body exceeds the {settings.max_upload_mb:g} MB upload limit; "
        "send a smaller image",
        max_file_bytes=image,
    )
    # A V2 body may carry a batch's images as base64 (4/3 the bytes) plus its JSON.
    v2_max_body = settings.batch_max_upload_bytes * 4 // 3 + 2**20
    routes = {
        "/infer": image_limit,
        "/infer/video": _multipart(
            video,
            f"request body exceeds the {settings.video_max_upload_mb:g} MB video upload "
            "limit; send a shorter or smaller video",
            max_file_bytes=video,
            noun="video",
        ),
        "/infer/batch": _multipart(
            settings.batch_max_upload_bytes,
            f"request body exceeds the {settings.batch_max_upload_mb:g} MB batch upload "
            "limit; send fewer or smaller images per request",
            field="files",
            max_files=settings.batch_max_files,
            max_file_bytes=image,
        ),
        "/jobs/video": _multipart(
            video,
            f"request body exceeds the {settings.video_max_upload_mb:g} MB video upload "
            "limit; send a smaller video",
            max_file_bytes=video,
            noun="video",
        ),
        "/jobs/batch": _multipart(
            settings.job_batch_max_upload_bytes,
            f"request body exceeds the {settings.job_batch_max_upload_mb:g} MB batch job "
            "upload limit; split the images over several jobs",
            field="files",
            max_files=settings.job_batch_max_files,
            max_file_bytes=image,
        ),
        "/v2/models/": BodyLimit(
            v2_max_body,
            f"request body exceeds the {v2_max_body / 2**20:g} MB limit of a V2 "
            "inference request; send fewer or smaller images per request",
            max_files=settings.batch_max_files,
            max_file_bytes=image,
        ),
    }
    return BodyLimits(image_limit, settings.body_timeout_s, routes)
