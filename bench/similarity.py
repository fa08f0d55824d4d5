"""'Seen before': how well the perceptual hash finds copies, and what a lookup costs as the
store grows.

Run with `make bench-similarity` (see bench/README.md). In one run:

1. quality on 200 distinct pictures (veracity.evaluation.duplicates): the share of JPEG-q70
   re-encodes and half-size copies whose original is found within the threshold (goal at
   least 95% each), and the share of distinct pairs that match (goal at most 1%); also the
   distances' spread, so the threshold's margin shows;
2. lookup time against 10 thousand, 100 thousand and 1 million stored hashes (random
   256-bit hashes; the in-memory index the service holds), the median of --repeats lookups
   each, with the index's memory; the ratio 1M / 10k shows how it scales (linear: about
   100x).

Writes bench/results/similarity.json; exits 1 if a quality goal is missed. No server, no
network; bounded by --repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from veracity.evaluation.duplicates import duplicate_cases
from veracity.images import DEFAULT_FORMATS
from veracity.similarity.index import SimilarityIndex
from veracity.similarity.phash import HASH_HEX, perceptual_hash, to_words

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "similarity.json"
THRESHOLD = 40
RECALL_GOAL = 0.95
FALSE_MATCH_GOAL = 0.01


def bits(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.bitwise_count(a ^ b).sum())


def quality(count: int) -> dict[str, float]:
    cases = duplicate_cases(count)
    t0 = time.perf_counter()
    hashes = [
        [
            perceptual_hash(data, DEFAULT_FORMATS) or ""
            for data in (c.original, c.jpeg_q70, c.half_size)
        ]
        for c in cases
    ]
    per_image_ms = (time.perf_counter() - t0) / (3 * len(cases)) * 1000
    words = to_words([h[0] for h in hashes])
    q70 = [
        int(np.bitwise_count(to_words([h[1]])[0] ^ words[i]).sum()) for i, h in enumerate(hashes)
    ]
    half = [
        int(np.bitwise_count(to_words([h[2]])[0] ^ words[i]).sum()) for i, h in enumerate(hashes)
    ]
    cross = [bits(words[i], words[j]) for i in range(len(words)) for j in range(i + 1, len(words))]
    return {
        "pictures": len(cases),
        "threshold_bits": THRESHOLD,
        "recall_jpeg_q70": sum(d <= THRESHOLD for d in q70) / len(q70),
        "recall_half_size": sum(d <= THRESHOLD for d in half) / len(half),
        "false_match_rate": sum(d <= THRESHOLD for d in cross) / len(cross),
        "max_distance_jpeg_q70": max(q70),
        "max_distance_half_size": max(half),
        "min_distance_distinct": min(cross),
        "hash_ms_per_image": round(per_image_ms, 2),
    }


def lookup_times(sizes: list[int], repeats: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    now = datetime.now(UTC)
    index = SimilarityIndex()
    out: dict[str, dict[str, float]] = {}
    held = 0
    for size in sizes:
        fresh = [rng.bytes(HASH_HEX // 2).hex() for _ in range(size - held)]
        index.add_many([(f"p{held + i}", h, now) for i, h in enumerate(fresh)])
        held = size
        queries = [rng.bytes(HASH_HEX // 2).hex() for _ in range(repeats)]
        index.near(queries[0], THRESHOLD, 32)  # warm
        times = []
        for query in queries:
            t0 = time.perf_counter()
            index.near(query, THRESHOLD, 32)
            times.append(time.perf_counter() - t0)
        out[str(size)] = {
            "median_ms": round(statistics.median(times) * 1000, 3),
            "p95_ms": round(sorted(times)[int(0.95 * (len(times) - 1))] * 1000, 3),
            "index_mib": round(size * HASH_HEX / 2 / 2**20, 1),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    report: dict[str, object] = {"quality": quality(args.pictures)}
    sizes = [10_000, 100_000, 1_000_000]
    lookups = lookup_times(sizes, args.repeats)
    report["lookup"] = lookups
    report["scaling_1m_over_10k"] = round(
        lookups["1000000"]["median_ms"] / lookups["10000"]["median_ms"], 1
    )
    print(json.dumps(report, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    q = report["quality"]
    assert isinstance(q, dict)
    missed = [
        name
        for name, ok in (
            ("recall_jpeg_q70", q["recall_jpeg_q70"] >= RECALL_GOAL),
            ("recall_half_size", q["recall_half_size"] >= RECALL_GOAL),
            ("false_match_rate", q["false_match_rate"] <= FALSE_MATCH_GOAL),
        )
        if not ok
    ]
    if missed:
        print(f"goals missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
