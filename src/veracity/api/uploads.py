"""Receiving an upload: admission before the body, the body within its limit and time, and
the watch that drops a request's work when its client hangs up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from veracity.api.deps import CallerDep, ModelServiceDep
from veracity.api.limits import BodyLimit, BodyLimits
from veracity.api.middleware import BODY_BUDGET
from veracity.callers import Caller
from veracity.errors import (
    BadRequestError,
    ClientDisconnectedError,
    PayloadTooLargeError,
    RequestTimeoutError,
)
from veracity.serving.context import RequestContext
from veracity.serving.service import ModelService

T = TypeVar("T")

# An upload is its file parts; a few text fields are tolerated (some clients add them).
MAX_FORM_FIELDS = 4
# Text fields are held in memory, so each is capped. (python-multipart caps each part's
# header lines at about 4 KB and 8 headers.)
MAX_FIELD_BYTES = 8 * 1024

Files = list[tuple[str | None, bytes]]


@dataclass(frozen=True)
class Upload:
    """A route's upload, not received yet: the route receives it once its parameters are
    valid (FastAPI validates a route's own query parameters only after its dependencies),
    so a request refused anyway costs neither an upload nor memory."""

    request: Request
    service: ModelService
    caller: Caller
    limit: BodyLimit
    timeout_s: float

    def context(self, model: str | None = None, version: str | None = None) -> RequestContext:
        """The request's context for judging: its work is dropped if the client hangs up."""
        request_id: str = self.request.state.request_id

        def run(work: Awaitable[T]) -> Awaitable[T]:
            return served(self.request, self.service, work)

        return RequestContext(request_id, self.caller, model, version, run=run)

    def admit(self) -> None:
        """Refuse now (503) what the model service would refuse after the upload."""
        self.service.check_admission()

    async def admitted_file(self) -> bytes:
        """Admitted, then the one file of the body."""
        self.admit()
        return await self.file()

    async def admitted_files(self) -> Files:
        """Admitted, then each file of the body, with its name."""
        self.admit()
        return await self.files()

    async def file(self) -> bytes:
        return (await self.files())[0][1]

    async def files(self) -> Files:
        """Each file part: within the body timeout, at most the route's count and size."""
        self._hold()
        limit = self.limit
        try:
            async with asyncio.timeout(self.timeout_s):
                return await _read_files(self.request, limit)
        except TimeoutError as e:
            raise RequestTimeoutError(
                f"the request body was not received within {self.timeout_s:g} s; check the "
                f"connection and send the {limit.noun} again"
            ) from e
        except ClientDisconnect as e:
            raise ClientDisconnectedError("the client disconnected during the upload") from e

    async def body(self) -> bytes:
        """The raw body (its size is bounded by the route's limit), within the timeout."""
        self._hold()
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self.request.body()
        except TimeoutError as e:
            raise RequestTimeoutError(
                f"the request body was not received within {self.timeout_s:g} s; check the "
                "connection and send it again"
            ) from e
        except ClientDisconnect as e:
            raise ClientDisconnectedError("the client went away while sending the body") from e

    def _hold(self) -> None:
        # The body counts against the replica's body budget as it arrives, until the
        # request is answered (BodyBudgetMiddleware counts and releases); after auth and
        # admission, so a refused request holds nothing.
        self.request.scope.setdefault("state", {})[BODY_BUDGET] = self.service.admission


async def get_upload(request: Request, service: ModelServiceDep, caller: CallerDep) -> Upload:
    # async, like the dependencies in veracity.api.deps: no worker-thread hop.
    limits: BodyLimits = request.app.state.body_limits
    return Upload(request, service, caller, limits.of(request.url.path), limits.body_timeout_s)


UploadDep = Annotated[Upload, Depends(get_upload)]


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


async def served(request: Request, service: ModelService, work: Awaitable[T]) -> T:
    """``until_disconnected``, counting a hang-up as work shed (every model route)."""
    try:
        return await until_disconnected(request, work)
    except ClientDisconnectedError:
        service.record_shed("client_disconnected")
        raise


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _read_files(request: Request, limit: BodyLimit) -> Files:
    field, max_files, noun = limit.field, limit.max_files, limit.noun
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
        return [await _read_file(upload, field, limit) for upload in uploads]
    finally:
        await form.close()


async def _read_file(
    upload: UploadFile | str, field: str, limit: BodyLimit
) -> tuple[str | None, bytes]:
    if not isinstance(upload, UploadFile):
        raise BadRequestError(f"the {field!r} part must be a file upload, not a text field")
    # One byte past the limit is enough to know the file is too large; the body limit
    # leaves room for multipart overhead, so each file is checked here.
    max_bytes = limit.max_file_bytes
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        name = f" {upload.filename!r}" if limit.max_files > 1 and upload.filename else ""
        raise PayloadTooLargeError(
            f"the file{name} exceeds the {max_bytes / (1024 * 1024):g} MB upload "
            f"limit; send a smaller {limit.noun}"
        )
    if not data and limit.max_files == 1:
        raise BadRequestError("the uploaded file is empty")
    return upload.filename, data
