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
        # Full chunks, then the one being filled: a lookup reads the filled part of the
        # tail in place. (Turning a buffer into a chunk at every lookup, as before, left
        # one chunk per request answered, each a Python iteration of every later lookup.)
        self._sealed: list[np.ndarray] = []
        self._tail = _empty_chunk()
        self._fill = 0
        self._lock = threading.Lock()
        self._recent: dict[str, datetime] = {}  # prediction ID -> created_at, in the overlap
        self.watermark: datetime | None = None  # newest created_at read from the store

    def __len__(self) -> int:
        with self._lock:
            return _CHUNK * len(self._sealed) + self._fill

    def add(self, prediction_id: str, perceptual_hash: str, created_at: datetime) -> None:
        with self._lock:
            self._add_locked([(prediction_id, perceptual_hash, created_at)])

    def add_many(self, rows: list[tuple[str, str, datetime]]) -> None:
        with self._lock:
            self._add_locked(rows)
            if self.watermark is not None:
                horizon = self.watermark - REFRESH_OVERLAP
                self._recent = {k: v for k, v in self._recent.items() if v >= horizon}

    def _add_locked(self, rows: list[tuple[str, str, datetime]]) -> None:
        hashes = []
        for prediction_id, perceptual_hash, created_at in rows:
            if prediction_id in self._recent or len(perceptual_hash) != HASH_HEX:
                continue
            self._recent[prediction_id] = created_at
            hashes.append(perceptual_hash)
            if self.watermark is None or created_at > self.watermark:
                self.watermark = created_at
        words = to_words(hashes).T  # (4, n), word-major like the chunks
        done = 0
        while done < words.shape[1]:
            room = min(_CHUNK - self._fill, words.shape[1] - done)
            self._tail[:, self._fill : self._fill + room] = words[:, done : done + room]
            self._fill += room
            done += room
            if self._fill == _CHUNK:
                # Lookups may hold views of the full tail: it is never written again.
                self._sealed.append(self._tail)
                self._tail, self._fill = _empty_chunk(), 0

    def near(self, perceptual_hash: str, max_distance: int, limit: int) -> list[tuple[str, int]]:
        """Distinct stored hashes within ``max_distance`` bits, nearest first."""
        query = to_words([perceptual_hash])[0]
        with self._lock:
            # The tail's filled columns are not written again (adds go past them).
            chunks = [*self._sealed, self._tail[:, : self._fill]]
        found: dict[str, int] = {}
        for chunk in chunks:
            d = distances(chunk, query)
            for index in np.flatnonzero(d <= max_distance):
                value = chunk[:, index].astype(">u8").tobytes().hex()
                found[value] = min(found.get(value, 1 << 30), int(d[index]))
        return sorted(found.items(), key=lambda item: item[1])[:limit]


def _empty_chunk() -> np.ndarray:
    return np.empty((HASH_HEX // 16, _CHUNK), dtype=np.uint64)
