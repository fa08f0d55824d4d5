"""'Seen before': the earlier predictions of near-duplicates of an image, for the caller.

The app owns one ``SeenBefore``: it loads the store's hashes into the in-memory index in the
background at start-up (lookups meanwhile see what is loaded so far), refreshes it every few
seconds with what other replicas recorded, and adds what this replica records. A lookup
finds the nearest distinct hashes in memory, then reads the predictions that carry them
from the store, only those the caller may see (its own, or all for an admin key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from veracity.callers import Caller
from veracity.errors import StoreUnavailableError
from veracity.metrics import ServiceMetrics
from veracity.similarity.index import REFRESH_OVERLAP, SimilarityIndex
from veracity.store.predictions import PredictionStore, StoredPrediction
from veracity.store.schema import PredictionRow

logger = logging.getLogger("veracity.similarity")

MAX_MATCHES = 5
# Distinct hashes considered per lookup (each may be shared by several predictions).
_CANDIDATES = 32
# Up to this many hashes a lookup runs on the event loop: it takes 0.06 CPU-ms at 10,000
# and 0.2 at 50,000 on the 2-core bench machine, less than handing it to a thread and back
# costs under load (bench/README.md, "Where the CPU goes"). Beyond, the loop would stall
# for longer than that: a thread takes it.
_INLINE_HASHES = 50_000


@dataclass(frozen=True)
class SeenMatch:
    prediction: StoredPrediction
    distance: int  # bits of the 256-bit pHash that differ


class SeenBefore:
    def __init__(
        self,
        store: PredictionStore,
        *,
        max_distance: int,
        refresh_s: float = 5.0,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.store = store
        self._metrics = metrics
        self.max_distance = max_distance
        self.index = SimilarityIndex()
        self._refresh_s = refresh_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_fresh())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> None:
        """Read what was recorded since the last refresh (everything, the first time)."""
        watermark = self.index.watermark
        since = None if watermark is None else watermark - REFRESH_OVERLAP
        rows = await self.store.perceptual_hashes(since)
        await asyncio.to_thread(self.index.add_many, rows)

    async def _keep_fresh(self) -> None:
        while True:
            try:
                await self.refresh()
            except StoreUnavailableError:
                logger.warning("similarity index not refreshed; the store is unavailable")
            await asyncio.sleep(self._refresh_s)

    def remember(self, rows: list[PredictionRow]) -> None:
        for row in rows:
            if row.perceptual_hash is not None:
                self.index.add(row.id, row.perceptual_hash, row.created_at)

    async def lookup(self, perceptual_hash: str, caller: Caller) -> list[SeenMatch]:
        """Earlier predictions of near-duplicates, nearest first, at most ``MAX_MATCHES``.

        Raises:
            StoreUnavailableError: the store could not be read.
        """
        index = self.index
        if len(index) <= _INLINE_HASHES:
            near = index.near(perceptual_hash, self.max_distance, _CANDIDATES)
        else:
            near = await asyncio.to_thread(
                index.near, perceptual_hash, self.max_distance, _CANDIDATES
            )
        if not near:
            self._count(False)
            return []
        distance = dict(near)
        found = await self.store.with_hashes(list(distance), caller, limit=MAX_MATCHES * 4)
        matches = [
            SeenMatch(item, distance[item.row.perceptual_hash or ""])
            for item in found
            if item.row.perceptual_hash in distance
        ]
        matches.sort(key=lambda m: (m.distance, -m.prediction.row.created_at.timestamp()))
        self._count(bool(matches))
        return matches[:MAX_MATCHES]

    def _count(self, matched: bool) -> None:
        if self._metrics is not None:
            self._metrics.seen_before.labels("match" if matched else "none").inc()
