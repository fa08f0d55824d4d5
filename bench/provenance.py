"""What reading content credentials costs: POST /infer with and without C2PA credentials,
and with reading turned off.

Run with `make bench-provenance` (about two minutes on 2 cores). Two `veracity serve`
processes on loopback with the demo model, the exact cache and the results store off (every
request reaches the model): one reads credentials (the default), one does not
(VERACITY_PROVENANCE_ENABLED=false). One 1280x720 JPEG (bench/models.py's), and the same
JPEG signed with a C2PA manifest (a throwaway test certificate chain, tests/c2pafiles.py).
Each round sends, one after the other and in an order rotated every round:

  off     the plain JPEG to the server that does not read credentials (the baseline)
  scan    the plain JPEG to the server that does: the marker scan finds nothing
  read    the signed JPEG to it: the credentials read and validated in a worker process

Targets, as ratios of latency p50 measured side by side in this run: scan / off <= 1.05 (a
file without credentials pays almost nothing) and read / off <= 1.15 (a signed one pays a
worker round trip, not a second model). Exits 1 if one is missed or a request fails (or a
signed answer does not report its credentials). Writes bench/results/provenance.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import photo_720p  # the bench folder is not a package
from server import Server, post_infer
from tests import c2pafiles

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"scan_over_off": 1.05, "read_over_off": 1.15}


def timed(client: httpx.Client, image: bytes, *, signed: bool) -> float | None:
    elapsed_ms, response = post_infer(client, image)
    if response.status_code != 200:
        return None
    provenance = response.json()["provenance"]
    if signed and not (provenance and provenance["state"] == "valid_untrusted"):
        return None
    return elapsed_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "checkpoints" / "demo.safetensors"
    )
    args = parser.parse_args()
    image, source = photo_720p()
    signed = c2pafiles.sign(image, definition=c2pafiles.manifest(c2pafiles.CAMERA))
    plain_env = {"VERACITY_CACHE_ENABLED": "false", "VERACITY_STORE_ENABLED": "false"}
    latencies: dict[str, list[float]] = {"off": [], "scan": [], "read": []}
    failures = 0
    with tempfile.TemporaryDirectory(prefix="veracity-bench-provenance-") as tmp:
        reading = Server(args.checkpoint, plain_env, Path(tmp) / "reading.log")
        off = Server(
            args.checkpoint,
            plain_env | {"VERACITY_PROVENANCE_ENABLED": "false"},
            Path(tmp) / "off.log",
        )
        try:
            reading.wait_ready()
            off.wait_ready()
            with (
                httpx.Client(base_url=reading.url, timeout=120) as reader,
                httpx.Client(base_url=off.url, timeout=120) as baseline,
            ):
                runs = {
                    "off": lambda: timed(baseline, image, signed=False),
                    "scan": lambda: timed(reader, image, signed=False),
                    "read": lambda: timed(reader, signed, signed=True),
                }
                for run in runs.values():  # warm-up (and the worker's start), not counted
                    run()
                names = list(runs)
                for round_ in range(args.rounds):
                    shift = round_ % len(names)
                    for name in names[shift:] + names[:shift]:
                        measured = runs[name]()
                        if measured is None:
                            failures += 1
                        else:
                            latencies[name].append(measured)
        finally:
            reading.stop()
            off.stop()
    p50 = {name: statistics.median(values) for name, values in latencies.items() if values}
    ratios = {
        "scan_over_off": p50["scan"] / p50["off"] if {"scan", "off"} <= set(p50) else None,
        "read_over_off": p50["read"] / p50["off"] if {"read", "off"} <= set(p50) else None,
    }
    checks = {
        name: {"measured": None if value is None else round(value, 3), "at_most": TARGETS[name]}
        | {"passed": value is not None and value <= TARGETS[name]}
        for name, value in ratios.items()
    }
    passed = failures == 0 and all(check["passed"] for check in checks.values())
    result: dict[str, Any] = {
        "image": f"1280x720 JPEG from {source} ({len(image)} bytes; signed: {len(signed)})",
        "rounds": args.rounds,
        "p50_ms": {name: round(value, 1) for name, value in p50.items()},
        "targets": checks,
        "failures": failures,
        "passed": passed,
    }
    out = ROOT / "bench" / "results" / "provenance.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
