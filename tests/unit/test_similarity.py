"""'Seen before': the pHash finds re-encoded and resized copies and keeps distinct pictures
apart (the issue's goal on 200 images), and the in-memory index finds what it holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from veracity.evaluation.duplicates import duplicate_cases
from veracity.images import DEFAULT_FORMATS
from veracity.similarity.index import SimilarityIndex
from veracity.similarity.phash import HASH_HEX, perceptual_hash

MAX_DISTANCE = 40  # the default VERACITY_SEEN_BEFORE_MAX_DISTANCE


@pytest.fixture(scope="module")
def hashed() -> list[tuple[str, str, str]]:
    cases = duplicate_cases(200)
    out = []
    for case in cases:
        hashes = [
            perceptual_hash(b, DEFAULT_FORMATS)
            for b in (case.original, case.jpeg_q70, case.half_size)
        ]
        assert all(h is not None and len(h) == HASH_HEX for h in hashes)
        out.append(tuple(hashes))
    return out  # type: ignore[return-value]


def test_near_duplicates_are_found_and_distinct_pictures_are_not(hashed) -> None:
    assert len(hashed) == 200
    index = SimilarityIndex()
    now = datetime.now(UTC)
    index.add_many([(f"p{i}", original, now) for i, (original, _, _) in enumerate(hashed)])
    found_q70 = found_half = false_matches = 0
    for original, q70, half in hashed:
        found_q70 += any(h == original for h, _ in index.near(q70, MAX_DISTANCE, 10))
        found_half += any(h == original for h, _ in index.near(half, MAX_DISTANCE, 10))
        false_matches += sum(1 for h, _ in index.near(original, MAX_DISTANCE, 10) if h != original)
    pairs = len(hashed) * (len(hashed) - 1)
    assert found_q70 / len(hashed) >= 0.95
    assert found_half / len(hashed) >= 0.95
    assert false_matches / pairs <= 0.01


def test_the_index_finds_a_copy_among_many_and_skips_duplicates() -> None:
    rng = np.random.default_rng(0)
    now = datetime.now(UTC)
    stored = [rng.bytes(HASH_HEX // 2).hex() for _ in range(100_000)]
    index = SimilarityIndex()
    index.add_many([(f"p{i}", h, now) for i, h in enumerate(stored)])
    target = stored[12_345]
    flipped = bytearray(bytes.fromhex(target))
    flipped[0] ^= 0b111  # 3 bits away
    matches = index.near(bytes(flipped).hex(), 10, 5)
    assert matches == [(target, 3)]
    # The same prediction read again on a refresh is not held twice; a later one is added.
    index.add_many([("p12345", target, now)])
    index.add("late", target, now + timedelta(seconds=1))
    assert len(index) == 100_001
    assert index.near(target, 0, 5) == [(target, 0)]


def test_unreadable_bytes_have_no_hash() -> None:
    assert perceptual_hash(b"not an image", DEFAULT_FORMATS) is None


def test_lookups_between_adds_neither_lose_hashes_nor_fragment_the_index(monkeypatch) -> None:
    # As under traffic: every answer adds its hash, every request looks one up. A lookup
    # used to turn the hashes added since into a chunk of their own, so the chunks (each a
    # Python iteration of every later lookup) grew with the requests answered.
    monkeypatch.setattr("veracity.similarity.index._CHUNK", 4)
    rng = np.random.default_rng(3)
    hashes = [rng.bytes(HASH_HEX // 2).hex() for _ in range(10)]
    index = SimilarityIndex()
    now = datetime.now(UTC)
    for n, value in enumerate(hashes):
        index.add(f"p{n}", value, now)
        assert index.near(value, 0, 5) == [(value, 0)]
        assert all(index.near(seen, 0, 5) == [(seen, 0)] for seen in hashes[:n])
    index.add_many([(f"q{n}", value, now) for n, value in enumerate(hashes[:3])])
    assert len(index) == 13
    assert len(index._sealed) == 3  # 13 hashes in chunks of 4: three full, one filling
