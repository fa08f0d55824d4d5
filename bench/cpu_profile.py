"""Where the server's CPU goes per image: py-spy samples a real `veracity serve` under load.

Run with `make bench-profile` (about two minutes). One server on loopback with the
synthetic model (resnet10t, 16 native-resolution 64 px patches per image, ONNX Runtime, the
issue's setup), the exact cache off (distinct uploads), the store, "seen before" and INFO
logs on, as deployed. wrk, with `--connections` connections, posts 64 distinct 1280x720
scenes in turn (bench/throughput.py's load: a load generator in C, so the server has the
cores; distinct scenes, so "seen before" does the work distinct uploads cause) while
py-spy (a sampling profiler that attaches to the running process) records the threads that
are on CPU for `--seconds`. Each sample is put in the first stage whose frames it holds
(the order below), and the server's own CPU time per answered image, read from /proc, is
split in those proportions.

Writes bench/results/profile.json and prints the breakdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import Server, cpu_seconds, multipart  # the bench folder is not a package
from throughput import WRK_SCRIPT, frames, load

ROOT = Path(__file__).resolve().parents[1]
# (stage, substrings of a frame): the first stage with a matching frame takes the sample.
STAGES = (
    ("model forward (ONNX Runtime)", ("onnxruntime", "backends.py")),
    ("JPEG decode", ("PIL/", "ImageFile", "images.py")),
    ("patches and normalisation", ("preprocess.py", "torch/")),
    ("perceptual hash (seen before)", ("imagehash", "phash.py", "similarity/")),
    ("content-credential scan", ("provenance/",)),
    ("results store", ("sqlalchemy", "store/", "sqlite3")),
    ("JSON logs", ("logging/", "pythonjsonlogger", "logs.py")),
    ("multipart upload", ("multipart", "uploads.py")),
    ("answer model (pydantic)", ("pydantic",)),
    ("metrics", ("prometheus",)),
    ("HTTP (uvicorn, starlette, fastapi)", ("uvicorn", "starlette", "fastapi", "h11", "httptools")),
    ("serving core (veracity)", ("veracity/",)),
    ("event loop and threads", ("asyncio", "threading.py", "concurrent/")),
)


def _frame(frame: str) -> str:
    """``function (path/to/file.py:line)`` -> ``function (file.py)``."""
    function, _, where = frame.partition(" (")
    return f"{function} ({Path(where.split(':')[0]).name})" if where else function


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    for name, needles in STAGES:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "checkpoints" / "synthetic.safetensors"
    )
    args = parser.parse_args()
    images = frames(64)
    spy = Path(sys.executable).with_name("py-spy")
    with tempfile.TemporaryDirectory(prefix="veracity-bench-profile-") as tmp:
        server = Server(
            args.checkpoint,
            {
                "VERACITY_CACHE_ENABLED": "false",
                "VERACITY_BACKEND": "onnx",
                "VERACITY_LOG_LEVEL": "INFO",
                "VERACITY_DATA_DIR": str(Path(tmp) / "data"),
            },
            Path(tmp) / "server.log",
        )
        raw = Path(tmp) / "samples.txt"
        try:
            server.wait_ready()
            for i, image in enumerate(images):
                (Path(tmp) / f"{i}.body").write_bytes(multipart(image))
            (Path(tmp) / "load.lua").write_text(WRK_SCRIPT)
            load(server, Path(tmp), len(images), args.connections, 5)  # warm-up
            command = [str(spy), "record", "--pid", str(server.process.pid), "--format", "raw"]
            command += ["--duration", str(int(args.seconds)), "--rate", "200"]
            record = subprocess.Popen(
                [*command, "--output", str(raw), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached before the measured load starts
            before = cpu_seconds(server.process.pid)
            run = load(server, Path(tmp), len(images), args.connections, int(args.seconds) - 2)
            used = cpu_seconds(server.process.pid) - before
            record.wait(timeout=args.seconds + 60)
        finally:
            server.stop()
        counts: Counter[str] = Counter()
        leaves: dict[str, Counter[str]] = {}
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stage = stage_of(stack)
                counts[stage] += int(count)
                leaves.setdefault(stage, Counter())[_frame(stack.split(";")[-1])] += int(count)
    total = sum(counts.values())
    answered = run["answered"]
    cpu_ms = 1000 * used / max(answered, 1)
    breakdown = {
        name: {
            "share": round(n / total, 4),
            "cpu_ms_per_image": round(cpu_ms * n / total, 2),
            # Where inside the stage: the innermost frames that took most samples.
            "top_frames": {f: round(c / n, 3) for f, c in leaves[name].most_common(4)},
        }
        for name, n in counts.most_common()
    }
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "checkpoint": str(args.checkpoint.relative_to(ROOT)),
        "images": "64 distinct 1280x720 JPEGs (bench/verdicts.py frame_720p)",
        "connections": args.connections,
        "seconds": args.seconds,
        "images_per_second": run["images_per_second"],
        "failures": run["errors"],
        "server_cpu_ms_per_image": round(cpu_ms, 1),
        "samples": total,
        "breakdown": breakdown,
    }
    out = ROOT / "bench" / "results" / "profile.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if run["errors"] == 0 and total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
