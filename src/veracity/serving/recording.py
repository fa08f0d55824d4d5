"""What the model routes do with the results store: the exact-cache lookup before inference,
and the record of every verdict after it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import NoOpTracer, Tracer
from pydantic import BaseModel

from veracity.answers import SeenBeforeModel
from veracity.callers import Caller
from veracity.errors import StoreUnavailableError
from veracity.serving.runner import ModelRunner
from veracity.similarity.seen import SeenBefore
from veracity.store.inputs import InputFiles
from veracity.store.predictions import Kind, PredictionStore, cache_key
from veracity.store.schema import PredictionRow
from veracity.tracing import child_span

logger = logging.getLogger("veracity.store")

# Fields of an answer that belong to the request, not to the verdict: not stored, and
# filled in afresh when a stored answer is replayed.
REQUEST_FIELDS = frozenset(
    {"request_id", "prediction_id", "stored", "cached", "receipt", "seen_before"}
)

_VIDEO_MEDIA_TYPES = {"mp4": "video/mp4", "matroska": "video/x-matroska"}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def video_media_type(container: str) -> str:
    return _VIDEO_MEDIA_TYPES.get(container, "application/octet-stream")


class Recorder:
    """The app's link between answers and the store (``store`` None: nothing is kept): the
    exact cache, the records, and what the store knows of near-duplicates."""

    def __init__(
        self,
        store: PredictionStore | None,
        *,
        cache: bool,
        seen: SeenBefore | None = None,
        inputs: InputFiles | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.store = store
        self.cache = cache and store is not None
        self.seen = seen
        self.inputs = inputs if store is not None else None
        self._tracer = tracer or NoOpTracer()

    async def seen_before(self, phash: str | None, caller: Caller) -> list[SeenBeforeModel] | None:
        """Earlier predictions of near-duplicates the caller may see; None when unknown."""
        if self.seen is None or phash is None:
            return None
        try:
            matches = await self.seen.lookup(phash, caller)
        except StoreUnavailableError:
            return None
        return [
            SeenBeforeModel(
                prediction_id=m.prediction.row.id,
                request_id=m.prediction.row.request_id,
                created_at=m.prediction.row.created_at,
                distance=m.distance,
                verdict=m.prediction.row.verdict,  # type: ignore[arg-type]
                fake_prob=m.prediction.row.fake_prob,
                model_version=m.prediction.row.model_version,
                review_label=m.prediction.review.label if m.prediction.review else None,
            )
            for m in matches
        ]

    def key(self, model: ModelRunner, digest: str, kind: Kind, options: dict[str, Any]) -> str:
        """The exact-cache key: the bytes, and everything else that shapes the answer
        (the version's name and number too: versions with equal weights answer, and are
        recorded and counted, each as itself)."""
        meta = model.metadata
        policy = model.policy
        scope = {
            "kind": "video" if kind == "video" else "image",
            "model": model.name,
            "version": model.version,
            "weights": meta.weights_sha256,
            "calibration": model.calibration_version,
            "thresholds": [policy.thresholds.real_threshold, policy.thresholds.fake_threshold],
            "quality": [policy.quality.min_jpeg_quality, policy.quality.min_content_std],
            "options": options,
        }
        if model.engine_fingerprint is not None:  # INT8: its scores differ a little
            scope["engine"] = model.engine_fingerprint
        return cache_key(digest, scope)

    async def cached(self, keys: list[str], caller: Caller) -> dict[str, PredictionRow]:
        """The caller's own earlier answers for ``keys`` (never another key's)."""
        if not self.cache or self.store is None or not keys:
            return {}
        with child_span(
            self._tracer, "cache.lookup", attributes={"veracity.cache.keys": len(keys)}
        ) as span:
            found = await self.store.find_cached(keys, caller.key_id)
            span.set_attribute("veracity.cache.hits", len(found))
            return found

    async def save(self, rows: list[PredictionRow], uploads: Iterable[bytes] = ()) -> bool:
        """Record the rows (and, where inputs are kept, the uploads they are about)."""
        if self.store is None:
            return False
        stored = await self.store.record(rows)
        if stored:
            if self.seen is not None:
                self.seen.remember(rows)
            await self.keep_inputs(rows, uploads)
        return stored

    async def keep_inputs(self, rows: list[PredictionRow], uploads: Iterable[bytes]) -> None:
        """Write the uploads that the rows are about, where the deployment keeps inputs. A
        failed write loses the copy, never the verdict (logged)."""
        inputs = self.inputs
        if inputs is None or not rows:
            return
        wanted = {row.input_sha256 for row in rows}
        blobs = list(uploads)

        def write() -> None:
            for data in blobs:
                digest = sha256_hex(data)
                if digest in wanted:
                    inputs.save(digest, data)
                    wanted.discard(digest)

        try:
            await asyncio.to_thread(write)
        except OSError as e:
            logger.error("input not kept", extra={"error": str(e)[:200]})

    async def erase_input(self, sha256: str | None) -> None:
        """After the last prediction about these bytes was erased: the file too."""
        if self.inputs is not None and sha256 is not None:
            await asyncio.to_thread(self.inputs.delete, sha256)


def build_row(
    *,
    prediction_id: str,
    request_id: str,
    caller: Caller,
    kind: Kind,
    digest: str,
    media_type: str,
    size_bytes: int,
    model: ModelRunner,
    answer: BaseModel,
    key: str,
    cached_from: str | None = None,
    phash: str | None = None,
    shadow_of: str | None = None,
) -> PredictionRow:
    """The stored record of one answer (image, batch item, video, or a shadow score of an
    image, ``shadow_of`` naming the prediction it shadowed)."""
    body = answer.model_dump(mode="json", exclude=set(REQUEST_FIELDS))
    timeline = body.get("timeline")
    return PredictionRow(
        id=prediction_id,
        request_id=request_id,
        created_at=datetime.now(UTC),
        key_id=caller.key_id,
        kind=kind,
        input_sha256=digest,
        perceptual_hash=phash,
        media_type=media_type,
        size_bytes=size_bytes,
        model_name=body["model_name"],
        model_version=body["model_version"],
        weights_sha256=model.metadata.weights_sha256,
        calibration_version=(
            str(body["calibration_version"])
            if body.get("calibration_version") is not None
            else None
        ),
        fake_prob=body.get("fake_prob"),
        real_prob=body.get("real_prob"),
        verdict=body["verdict"],
        reasons=[reason["code"] for reason in body.get("reasons", [])],
        timings_ms=body.get("timings_ms", {}),
        timeline=timeline,
        response=body,
        cache_key=key,
        cached_from=cached_from,
        shadow_of=shadow_of,
    )
