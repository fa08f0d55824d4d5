"""The scan: every listed file through the serving core in-process, a bounded number at
once, each ending as one line of the results file.

The files go through a ``ModelService`` exactly as uploads to ``POST /infer`` and
``POST /infer/video`` do (the same decoding limits, micro-batches, gates and verdict
rules, and the same content-credential reading), so a scan's verdicts are the service's.
At most ``in_flight`` files are read and judged at once (their bytes are the memory a scan
holds), videos at most as many as the service runs at once; a file's failure is its own
line, never the scan's end.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from veracity.answers import InferResponse, VideoResponse
from veracity.callers import Caller
from veracity.errors import VeracityError
from veracity.provenance.reader import CredentialReader
from veracity.scan.inputs import Location
from veracity.scan.results import ResultsFile
from veracity.serving.admission import Deadline
from veracity.serving.context import RequestContext
from veracity.serving.jobs import JOB_TIMEOUT_SETTING
from veracity.serving.judging import judge_image, judge_video
from veracity.serving.recording import Recorder, sha256_hex
from veracity.serving.service import ModelService
from veracity.store.schema import PredictionRow
from veracity.video.aggregate import AggregationRule
from veracity.video.container import detect_container
from veracity.video.plan import SamplingPlan, VideoLimits

logger = logging.getLogger("veracity.scan")

# Failures of the moment (the service busy or slow), not of the file: their lines say so,
# and a resumed scan judges those files again.
RETRYABLE = frozenset({"overloaded", "deadline_exceeded", "not_ready"})
# What a line leaves out of the service's answer: per-request fields, and timings that
# differ from run to run (a scan's lines are comparable across runs and machines).
_NOT_RECORDED = {"request_id", "cached", "timings_ms", "batch_size", "seen_before"}
# Who a scan's records belong to: no API key (admins list them, as they list the records of
# a service run without keys); a rerun finds its own records in the exact cache.
SCAN_CALLER = Caller(key_id=None, admin=False)
# ISO media brands of still images (HEIF, AVIF): an "ftyp" box that is not a video.
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


@dataclass(frozen=True)
class ScanOptions:
    """What each file may be, and how videos are sampled and bounded (as a job's: an
    archive's videos may be long)."""

    image_max_bytes: int
    video_max_bytes: int
    plan: SamplingPlan = field(default_factory=SamplingPlan)
    rule: AggregationRule = field(default_factory=AggregationRule)
    video_limits: VideoLimits = field(default_factory=VideoLimits)
    video_timeout_s: float = 1800.0
    in_flight: int = 16
    videos_in_flight: int = 1


@dataclass
class Summary:
    """What a scan did: files listed, judged, skipped (done before, by content), duplicates
    (the same bytes under another path in this scan), verdicts, the reasons of inconclusive
    ones, and errors by code."""

    listed: int = 0
    judged: int = 0
    from_store: int = 0  # judged, with the answer the results store held (scan --store)
    skipped: int = 0
    duplicates: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    inconclusive_reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def finished(self) -> int:
        return self.judged + self.skipped + self.duplicates + sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "judged": self.judged,
            "from_store": self.from_store,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "errors": sum(self.errors.values()),
            "verdicts": dict(self.verdicts.most_common()),
            "inconclusive_reasons": dict(self.inconclusive_reasons.most_common()),
            "errors_by_code": dict(self.errors.most_common()),
            "seconds": round(self.seconds, 1),
            "files_per_second": round(self.judged / self.seconds, 2) if self.seconds else None,
        }


class _FileError(VeracityError):
    """A file that cannot be read, or is over its kind's limit."""

    status_code = 422

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Judge:
    """Turns a path into its line through ``service``: a verdict, an error of the file's
    own, a duplicate of a file judged before in this scan, or ``{"skipped": true}`` for one
    whose content ``done`` holds (never written). One per process: the local scan's, or
    each Ray actor's (veracity.scan.cluster).

    Files are judged by the service's own ``judge_image`` and ``judge_video``. With a
    ``recorder`` over the results store (``scan --store``), each verdict is recorded there
    as the service records one, and a file whose exact answer the store already holds (the
    same bytes, model, calibration, policy and options, recorded by a scan) is answered
    from it: its line says ``from_store``.
    """

    def __init__(
        self,
        service: ModelService,
        options: ScanOptions,
        *,
        credentials: CredentialReader | None = None,
        done: Container[str] = frozenset(),
        recorder: Recorder | None = None,
    ) -> None:
        self.service = service
        self.options = options
        self.credentials = credentials
        self.done = done
        self.recorder = recorder or Recorder(None, cache=False)
        self._claimed: set[str] = set()  # digests judged or being judged here
        self._videos = asyncio.Semaphore(options.videos_in_flight)

    async def __call__(self, path: Location) -> dict[str, Any]:
        digest: str | None = None
        kind = "image"
        try:
            kind, data, read = await asyncio.to_thread(_read, path, self.options)
            digest = read
            # This scan's own first: a copy of a file judged earlier in it is a duplicate
            # (with its own line), one judged by an earlier scan is skipped.
            if read in self._claimed:
                return {"path": str(path), "sha256": read, "duplicate": True}
            if read in self.done:
                return {"path": str(path), "sha256": read, "skipped": True}
            self._claimed.add(read)
            answer: InferResponse | VideoResponse
            if kind == "video":
                async with self._videos:
                    answer, row = await self._video(data)
            else:
                answer, row = await self._image(data)
            if self.recorder.store is not None and row.cached_from is None:
                await self.recorder.save([row])
        except VeracityError as e:
            return _failed(path, digest, kind, e.code, e.message)
        except Exception as e:  # a bug, or a decoder's crash: this file's line, not the end
            logger.exception("scan: file failed", extra={"path": str(path)})
            return _failed(path, digest, kind, "internal_error", f"{type(e).__name__}: {e}")
        record = {"path": str(path), "sha256": digest, "kind": kind, "size_bytes": len(data)}
        record |= answer.model_dump(mode="json", exclude=_NOT_RECORDED)
        if self.recorder.store is not None:
            record["prediction_id"] = row.cached_from or row.id
            if row.cached_from is not None:
                record["from_store"] = True
        return record

    def _context(self, deadline: Deadline | None = None) -> RequestContext:
        return RequestContext(f"scan-{uuid.uuid4().hex[:24]}", SCAN_CALLER, deadline=deadline)

    async def _image(self, data: bytes) -> tuple[InferResponse, PredictionRow]:
        return await judge_image(
            self.service,
            self.recorder,
            self._context(),
            data,
            robustness_check=None,
            credentials=self.credentials,
        )

    async def _video(self, data: bytes) -> tuple[VideoResponse, PredictionRow]:
        options = self.options
        return await judge_video(
            self.service,
            self.recorder,
            self._context(Deadline(options.video_timeout_s, JOB_TIMEOUT_SETTING)),
            data,
            plan=options.plan,
            rule=options.rule,
            limits=options.video_limits,
            credentials=self.credentials,
        )


def tally(summary: Summary, record: dict[str, Any]) -> None:
    """Count one file's line (or skip) into ``summary``."""
    if record.get("skipped"):
        summary.skipped += 1
    elif record.get("duplicate"):
        summary.duplicates += 1
    elif "error" in record:
        summary.errors[record["error"]["code"]] += 1
    else:
        summary.judged += 1
        summary.from_store += bool(record.get("from_store"))
        summary.verdicts[record["verdict"]] += 1
        if record["verdict"] == "inconclusive":
            summary.inconclusive_reasons.update(r["code"] for r in record["reasons"])


def keep(results: ResultsFile, summary: Summary, record: dict[str, Any]) -> None:
    """Count a file's line and write it (a skip is counted only)."""
    tally(summary, record)
    if not record.get("skipped"):
        results.write(record)


async def scan(
    paths: Iterable[Location],
    results: ResultsFile,
    judge: Judge,
    *,
    progress: Callable[[Summary], None] | None = None,
) -> Summary:
    """Judge every file of ``paths`` not yet in ``results`` (``judge.done``) in this
    process, ``judge.options.in_flight`` at once, and append each line as it ends."""
    summary = Summary()
    started = time.perf_counter()
    slots = asyncio.Semaphore(judge.options.in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def one(path: Location) -> None:
        try:
            keep(results, summary, await judge(path))
        finally:
            slots.release()
            if progress is not None:
                progress(summary)

    try:
        for path in paths:
            summary.listed += 1
            await slots.acquire()
            task = asyncio.create_task(one(path))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        summary.seconds = time.perf_counter() - started
    return summary


def _read(path: Location, options: ScanOptions) -> tuple[str, bytes, str]:
    """The file's kind, bytes and SHA-256, refusing one over its kind's limit before
    reading it."""
    try:
        with _open(path) as f:
            head = f.read(16)
            video = detect_container(head) is not None and head[8:12] not in _IMAGE_BRANDS
            kind = "video" if video else "image"
            limit = options.video_max_bytes if kind == "video" else options.image_max_bytes
            size = f.seek(0, 2)
            if size > limit:
                raise _FileError(
                    f"{kind}_too_large",
                    f"{size} bytes; a scanned {kind} may have at most {limit} (the service's "
                    f"upload limit, VERACITY_{'VIDEO_' if kind == 'video' else ''}MAX_UPLOAD_MB)",
                )
            f.seek(0)
            data = f.read()
    except (OSError, ValueError) as e:  # PyArrow's "not a file system it knows" is a ValueError
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)[:300]
        raise _FileError("unreadable", f"cannot read the file: {reason}") from e
    return kind, data, sha256_hex(data)


def _open(location: Location) -> BinaryIO:
    """A local file, or a URI through PyArrow's file systems (object stores, HDFS)."""
    if isinstance(location, Path):
        return location.open("rb")
    try:
        from pyarrow import fs
    except ModuleNotFoundError as e:
        raise _FileError(
            "unreadable",
            f"{location}: reading URIs needs PyArrow (pip install 'veracity[ray]')",
        ) from e
    filesystem, inner = fs.FileSystem.from_uri(location)
    return cast(BinaryIO, filesystem.open_input_file(inner))


def _failed(
    path: Location, digest: str | None, kind: str, code: str, message: str
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "path": str(path),
        "sha256": digest,
        "kind": kind,
        "error": {"code": code, "message": message},
    }
    if code in RETRYABLE:
        record["retry"] = True
    return record
