"""Where the server's CPU goes per image: py-spy samples a real `veracity serve` under load.

Run with `make bench-profile` (about two minutes). One server on loopback with the
synthetic model (resnet10t, 16 native-resolution 64 px patches per image, ONNX Runtime, the
issue's setup), the exact cache off (distinct uploads), the store, "seen before" and INFO
logs on, as deployed. wrk, with `--connections` connections, posts distinct 1280x720
photos in turn (bench/throughput.py's frames and load: a load generator in C, so the server
has the cores; no photo repeated, so "seen before" does the work distinct uploads cause) while
py-spy (a sampling profiler that attaches to the running process) records the threads that
are on CPU for `--seconds`. Each sample is put in the first stage whose frames it holds
(the order below), and the server's own CPU time per answered image, read from /proc, is
split in those proportions.

Writes bench/results/profile.json and prints the breakdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import Server, cpu_seconds, multipart  # the bench folder is not a package
from throughput import SCENES, WRK_SCRIPT, frames, load

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


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each of the process's threads (utime + stime, /proc)."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            found[int(tid)] = cpu_seconds(pid, int(tid))
    return found


def thread_names(spy: Path, pid: int) -> dict[int, str]:
    """The Python threads' names by OS thread id, from `py-spy dump` (the pools name theirs:
    veracity-infer_0, veracity-preprocess_1, ...)."""
    dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True)
    return {
        int(tid): name for tid, name in re.findall(r'Thread (\d+) \(\w+\): "([^"]+)"', dump.stdout)
    }


def per_thread(
    before: dict[int, float], after: dict[int, float], names: dict[int, str], answered: int
) -> dict[str, float]:
    """CPU-ms per answered image by thread group (a pool's threads together; threads that
    Python did not start, such as a native library's, as "native")."""
    groups: Counter[str] = Counter()
    for tid, seconds in after.items():
        name = names.get(tid, "native")
        group = "event loop" if name == "MainThread" else re.sub(r"_\d+$", "", name)
        groups[group] += 1000 * (seconds - before.get(tid, 0.0)) / max(answered, 1)
    return {name: round(ms, 2) for name, ms in groups.most_common() if ms >= 0.01}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "checkpoints" / "synthetic.safetensors"
    )
    args = parser.parse_args()
    photos = frames(SCENES)
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
            for i, photo in enumerate(photos):
                (Path(tmp) / f"{i}.body").write_bytes(multipart(photo.read_bytes()))
            (Path(tmp) / "load.lua").write_text(WRK_SCRIPT)
            warm = load(server, Path(tmp), len(photos), args.connections, 5)
            command = [str(spy), "record", "--pid", str(server.process.pid), "--format", "raw"]
            command += ["--duration", str(int(args.seconds)), "--rate", "200"]
            record = subprocess.Popen(
                [*command, "--output", str(raw), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached before the measured load starts
            before = cpu_seconds(server.process.pid)
            threads_before = thread_cpu(server.process.pid)
            seconds = int(args.seconds) - 2
            start = warm["sent"]
            run = load(server, Path(tmp), len(photos), args.connections, seconds, start=start)
            used = cpu_seconds(server.process.pid) - before
            threads_after = thread_cpu(server.process.pid)
            record.wait(timeout=args.seconds + 60)
            names = thread_names(spy, server.process.pid)
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
        "images": f"{len(photos)} distinct 1280x720 JPEGs (bench/throughput.py frames)",
        "repeats": run["repeats"],
        "connections": args.connections,
        "seconds": args.seconds,
        "images_per_second": run["images_per_second"],
        "failures": run["errors"],
        "server_cpu_ms_per_image": round(cpu_ms, 1),
        "samples": total,
        # Measured, not sampled: each thread's CPU time from /proc over the load, by pool.
        "threads_cpu_ms_per_image": per_thread(threads_before, threads_after, names, answered),
        "breakdown": breakdown,
    }
    out = ROOT / "bench" / "results" / "profile.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if run["errors"] == 0 and total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
