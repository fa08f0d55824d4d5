"""`veracity scan` in-process against the same scan on a local Ray (Ray Data, one actor per
core), side by side on the same files: files per second, per core, and what starting each
costs.

Run with `make bench-scan` (about two minutes; needs requirements-ray.txt). The files are
the first `--files` distinct 720p photos of bench/throughput.py (camera-like scenes, none
repeated), judged by the synthetic model on ONNX Runtime, FP32 (`--precision int8` for its
checked INT8 graph), each way `--rounds` times alternating, into a fresh output each time.
"files/s" is the scan's own figure (first file listed to last line written: the model
loaded, the Ray actors started); "wall s" adds the process's start and the model's load.
Writes bench/results/scan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import CACHE, SCENES, frames  # the bench folder is not a package

from veracity.cpus import available_cpus

ROOT = Path(__file__).resolve().parents[1]


def run(folder: Path, out: Path, precision: str, ray: bool) -> dict[str, Any]:
    command = [str(Path(sys.executable).with_name("veracity")), "scan", str(folder)]
    command += ["--out", str(out), "--no-progress"]
    command += ["--checkpoint", str(ROOT / "checkpoints" / "synthetic.safetensors")]
    if ray:
        command += ["--ray", "local"]
    env = os.environ | {
        "VERACITY_BACKEND": "onnx",
        "VERACITY_PRECISION": precision,
        "VERACITY_EXPORT_DIR": str(CACHE / "exports"),
        "VERACITY_LOG_LEVEL": "WARNING",
        "VERACITY_DATA_DIR": str(out.parent / "data"),
    }
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"scan failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "files_per_second": summary["files_per_second"],
        "scan_seconds": summary["seconds"],
        "wall_seconds": round(wall, 1),
        "judged": summary["judged"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scan.json")
    args = parser.parse_args()
    cores = available_cpus()
    photos = frames(SCENES)[: args.files]
    runs: dict[str, list[dict[str, Any]]] = {"in-process": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="veracity-bench-scan-") as tmp:
        folder = Path(tmp) / "files"
        folder.mkdir()
        for photo in photos:
            (folder / photo.name).symlink_to(photo)
        for round_ in range(args.rounds):
            order = ["in-process", "ray"] if round_ % 2 == 0 else ["ray", "in-process"]
            for way in order:
                out = Path(tmp) / f"{way}-{round_}" / "results.jsonl"
                out.parent.mkdir()
                result = run(folder, out, args.precision, ray=way == "ray")
                runs[way].append(result)
                print(f"round {round_ + 1} {way}: {result}", flush=True)
    median = {
        way: {
            key: statistics.median(r[key] for r in rounds)
            for key in ("files_per_second", "scan_seconds", "wall_seconds")
        }
        for way, rounds in runs.items()
    }
    for figures in median.values():
        figures["files_per_second_per_core"] = round(figures["files_per_second"] / cores, 2)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {cores} CPUs, {platform.python_version()}",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "files": len(photos),
        "precision": args.precision,
        "median": median,
        "ray_over_in_process": round(
            median["ray"]["files_per_second"] / median["in-process"]["files_per_second"], 2
        ),
        "rounds": runs,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median", "ray_over_in_process")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
