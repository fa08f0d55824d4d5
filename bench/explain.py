"""What the second explanation costs: POST /infer with Grad-CAM against the patch grid.

Run with `make bench-explain` (about a minute on 2 cores). One `veracity serve` process on
loopback with the demo model, the exact cache and the results store off (every request
reaches the model), and one 1280x720 JPEG (bench/models.py's). Each round sends, one after
the other and in an order swapped every round, POST /infer?explain=true (the model's own
patch probabilities: no extra work) and POST /infer?explain=true&explain_method=grad_cam
(Grad-CAM: the image decoded again, one more forward pass and a backward pass). Reported:
the latency p50 of each and their ratio, measured side by side in the same run.

The one target is a regression guard from the service's own defaults: Grad-CAM's p50 at
most request_timeout_s (10 s), or a reviewer's request for it would time out on this
machine. Exits 1 if it is missed or a request fails. Writes bench/results/explain.json.
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
from models import photo_720p  # the bench folder is not a package
from server import Server, post_infer

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "patch_probabilities": {"explain": "true"},
    "grad_cam": {"explain": "true", "explain_method": "grad_cam"},
}
REQUEST_TIMEOUT_S = 10.0  # Settings.request_timeout_s's default


def timed(client: httpx.Client, image: bytes, params: dict[str, str]) -> float | None:
    elapsed_ms, response = post_infer(client, image, params)
    return elapsed_ms if response.status_code == 200 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "checkpoints" / "demo.safetensors"
    )
    args = parser.parse_args()
    image, source = photo_720p()
    with tempfile.TemporaryDirectory(prefix="veracity-bench-explain-") as tmp:
        server = Server(
            args.checkpoint,
            {"VERACITY_CACHE_ENABLED": "false", "VERACITY_STORE_ENABLED": "false"},
            Path(tmp) / "server.log",
        )
        try:
            server.wait_ready()
            latencies: dict[str, list[float]] = {name: [] for name in METHODS}
            failures = 0
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for params in METHODS.values():  # warm-up, not counted
                    timed(client, image, params)
                for round_ in range(args.rounds):
                    order = list(METHODS) if round_ % 2 == 0 else list(reversed(METHODS))
                    for name in order:
                        measured = timed(client, image, METHODS[name])
                        if measured is None:
                            failures += 1
                        else:
                            latencies[name].append(measured)
        finally:
            server.stop()
    p50 = {name: statistics.median(values) for name, values in latencies.items() if values}
    ratio = p50["grad_cam"] / p50["patch_probabilities"] if len(p50) == 2 else None
    guard = {"grad_cam_p50_ms": p50.get("grad_cam"), "at_most_ms": 1000 * REQUEST_TIMEOUT_S}
    passed = failures == 0 and ratio is not None and p50["grad_cam"] <= 1000 * REQUEST_TIMEOUT_S
    result: dict[str, Any] = {
        "image": f"1280x720 JPEG from {source}",
        "checkpoint": str(
            args.checkpoint.relative_to(ROOT)
            if args.checkpoint.is_relative_to(ROOT)
            else args.checkpoint
        ),
        "rounds": args.rounds,
        "p50_ms": {name: round(value, 1) for name, value in p50.items()},
        "grad_cam_over_patch_probabilities": None if ratio is None else round(ratio, 2),
        "failures": failures,
        "guard": guard | {"passed": passed},
    }
    out = ROOT / "bench" / "results" / "explain.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
