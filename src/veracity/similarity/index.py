"""The perceptual hashes of stored predictions, held in memory for lookups by Hamming
distance.

A 256-bit hash is four uint64 words; a lookup XORs the query with every stored hash and
counts bits (numpy's ``bitwise_count``): linear, but vectorised, about 7 ms per million
hashes on this 2-core machine (bench/similarity.py). The hashes live in chunks, word-major,
so recording one appends to a small buffer instead of copying the whole array. Each replica
keeps its own index: loaded from the store at start-up, extended by what it records, and
refreshed from the store every few seconds for what other replicas recorded.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import numpy as np

from veracity.similarity.phash import HASH_HEX, distances, to_words

_CHUNK = 65_536
# Rows committed late (a slow transaction, another replica's clock) are caught by reading
# this far back on every refresh; IDs seen within the window are not added twice.
REFRESH_OVERLAP = timedelta(minutes=2)


class SimilarityIndex:
    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._buffer: list[str] = []
        self._lock = threading.Lock()
        self._recent: dict[str, datetime] = {}  # prediction ID -> created_at, in the overlap
        self.watermark: datetime | None = None  # newest created_at read from the store

    def __len__(self) -> int:
        with self._lock:
            return sum(int(c.shape[1]) for c in self._chunks) + len(self._buffer)

    def add(self, prediction_id: str, perceptual_hash: str, created_at: datetime) -> None:
        with self._lock:
            self._add_locked(prediction_id, perceptual_hash, created_at)

    def add_many(self, rows: list[tuple[str, str, datetime]]) -> None:
        with self._lock:
            for prediction_id, perceptual_hash, created_at in rows:
                self._add_locked(prediction_id, perceptual_hash, created_at)
            self._flush_locked()
            if self.watermark is not None:
                horizon = self.watermark - REFRESH_OVERLAP
                self._recent = {k: v for k, v in self._recent.items() if v >= horizon}

    def _add_locked(self, prediction_id: str, perceptual_hash: str, created_at: datetime) -> None:
        if prediction_id in self._recent or len(perceptual_hash) != HASH_HEX:
            return
        self._recent[prediction_id] = created_at
        self._buffer.append(perceptual_hash)
        if self.watermark is None or created_at > self.watermark:
            self.watermark = created_at
        if len(self._buffer) >= _CHUNK:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._buffer:
            # Word-major: each of the four words contiguous, for the distance loop.
            self._chunks.append(np.ascontiguousarray(to_words(self._buffer).T))
            self._buffer = []

    def near(self, perceptual_hash: str, max_distance: int, limit: int) -> list[tuple[str, int]]:
        """Distinct stored hashes within ``max_distance`` bits, nearest first."""
        query = to_words([perceptual_hash])[0]
        with self._lock:
            self._flush_locked()
            chunks = list(self._chunks)
        found: dict[str, int] = {}
        for chunk in chunks:
            d = distances(chunk, query)
            for index in np.flatnonzero(d <= max_distance):
                value = chunk[:, index].astype(">u8").tobytes().hex()
                found[value] = min(found.get(value, 1 << 30), int(d[index]))
        return sorted(found.items(), key=lambda item: item[1])[:limit]
