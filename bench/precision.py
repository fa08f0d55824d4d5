"""What INT8 buys: images per second of the demo model served in FP32 and in INT8, side by
side in one run, against the real service.

Run with `make bench-precision` (about four minutes on 2 cores, after `veracity quantize`
has built and checked the demo model's INT8 graph; the Makefile target does that first).
Two `veracity serve` processes on loopback, VERACITY_PRECISION=fp32 and =int8 over the same
export cache, each checked to report the engine it was asked for (`GET /model`). The exact
cache is off (every request reaches the model, as distinct uploads do); the store, "seen
before" and logs stay on, as deployed. Each round gives one server, then the other (the
order alternates), `--seconds` of closed-loop load from `--clients` concurrent clients
sending 720p JPEGs that differ in their last pixels, counting successful answers. The
rounds' medians are compared.

Target: INT8 / FP32 images per second >= 1.5. Exits 1 if it is missed or an answer fails,
and when the INT8 graph is not served (its check against FP32 failed, or none was built):
the result then records why, the check's figures and the engine-level timings `veracity
quantize` measured. Writes bench/results/precision.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import photo_720p  # the bench folder is not a package
from server import API_KEY, Server, closed_loop

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.5


def variants(image: bytes, count: int) -> list[bytes]:
    """``count`` JPEGs of the photo, each with a different corner pixel (distinct bytes)."""
    with Image.open(io.BytesIO(image)) as opened:
        base = opened.convert("RGB")
    made = []
    for i in range(count):
        copy = base.copy()
        copy.putpixel((i % 16, i // 16), (i % 256, 255 - i % 256, 128))
        buffer = io.BytesIO()
        copy.save(buffer, format="JPEG", quality=90)
        made.append(buffer.getvalue())
    return made


def refused(args: argparse.Namespace, precision: str, engine: str, log: str) -> int:
    """The INT8 graph did not serve (its check failed, or none was built): say so with the
    check's figures and the engine-level timings `veracity quantize` measured, and fail."""
    weights = json.loads(args.checkpoint.with_suffix(".json").read_text())["weights_sha256"]
    record_path = args.export_dir / f"{weights}.int8.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "served": {precision: engine},
        "int8_served": False,
        "why": [line for line in log.splitlines() if "INT8" in line][-1:],
        "int8_check": record["acceptance"] if record else None,
        "engine_seconds_per_batch": (
            {"fp32": record["fp32_seconds_per_batch"], "int8": record["int8_seconds_per_batch"]}
            if record
            else None
        ),
        "passed": False,
    }
    out = ROOT / "bench" / "results" / "precision.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "checkpoints" / "demo.safetensors"
    )
    parser.add_argument(
        "--export-dir", type=Path, default=Path(tempfile.gettempdir()) / "veracity-exports"
    )
    args = parser.parse_args()
    image, source = photo_720p()
    images = variants(image, 256)
    rates: dict[str, list[float]] = {"fp32": [], "int8": []}
    failures = 0
    with tempfile.TemporaryDirectory(prefix="veracity-bench-precision-") as tmp:
        servers = {
            precision: Server(
                args.checkpoint,
                {
                    "VERACITY_CACHE_ENABLED": "false",
                    "VERACITY_BACKEND": "onnx",
                    "VERACITY_PRECISION": precision,
                    "VERACITY_EXPORT_DIR": str(args.export_dir),
                    "VERACITY_DATA_DIR": str(Path(tmp) / precision),
                    "VERACITY_LOG_LEVEL": "INFO",
                },
                Path(tmp) / f"{precision}.log",
            )
            for precision in rates
        }
        try:
            for precision, server in servers.items():
                server.wait_ready()
                engine = httpx.get(
                    server.url + "/model", headers={"X-API-Key": API_KEY}, timeout=30
                ).json()["backend"]
                wanted = {"fp32": "onnx", "int8": "onnx-int8"}[precision]
                if engine != wanted:
                    return refused(args, precision, engine, server.log.read_text())
                closed_loop(server.url, images[:8], args.clients, 3.0)  # warm-up, not counted
            for round_ in range(args.rounds):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for precision in order:
                    run = closed_loop(servers[precision].url, images, args.clients, args.seconds)
                    failures += int(run["failures"])
                    rates[precision].append(run["rps"])
        finally:
            for server in servers.values():
                server.stop()
    median = {name: statistics.median(values) for name, values in rates.items()}
    ratio = median["int8"] / median["fp32"]
    passed = failures == 0 and ratio >= TARGET
    weights = json.loads(args.checkpoint.with_suffix(".json").read_text())["weights_sha256"]
    record_path = args.export_dir / f"{weights}.int8.json"
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "image": f"1280x720 JPEG from {source}, 256 variants",
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "clients": args.clients,
        "images_per_second": {k: [round(v, 2) for v in vals] for k, vals in rates.items()},
        "median_images_per_second": {k: round(v, 2) for k, v in median.items()},
        "int8_over_fp32": {"measured": round(ratio, 3), "at_least": TARGET, "passed": passed},
        "int8_check": json.loads(record_path.read_text())["acceptance"],
        "failures": failures,
        "passed": passed,
    }
    out = ROOT / "bench" / "results" / "precision.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
