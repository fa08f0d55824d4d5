"""Does the model registry cost throughput at one model? A/B against the service before it.

Run with `make bench-registry` (about three minutes). In one run, on one machine, it:

1. checks out the last commit before the registry (--baseline, a git ref) into a temporary
   worktree, and starts `veracity serve` from it and from this checkout, on the same
   checkpoint with the same settings (ONNX backend, no results store, so every request
   reaches the model);
2. drives each in turn with the same closed loop (--clients concurrent clients posting the
   same photo to /infer for --duration seconds), alternating A, B, A, B... for --rounds;
3. reports requests per second and latency of each, and each round's ratio
   registry / baseline (a round's two runs are adjacent in time, so a drift in the
   machine's speed over the run cancels out of its ratio).

Both serve on uvicorn's asyncio loop and h11 parser: this checkout names them, and the
baseline (which let uvicorn pick) is kept off uvloop and httptools, which a test client
installs into the development environment, so only the model service differs.

It also reads each server's CPU time from /proc around every run: CPU per answered request
is what a saturated machine's throughput is made of, and it is far less disturbed than
req/s by whatever else the machine does meanwhile.

Targets: the median of the rounds' throughput ratios, and the baseline's CPU per request
over the registry's, are both at least 0.95 (no loss beyond noise), with no failed
request. Exits 1 if it is missed. Writes bench/results/registry.json. Only loopback
is used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from run import photo  # bench/run.py
from server import Server, closed_loop, cpu_seconds  # bench/server.py

REPO = Path(__file__).resolve().parents[1]
# The last commit with the single-model service (before admission, registry and runners
# were split apart).
BASELINE = "6503e8d"
TARGET = 0.95


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git ref (default: %(default)s)")
    parser.add_argument(
        "--checkpoint", type=Path, default=REPO / "checkpoints" / "demo.safetensors"
    )
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "registry.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="veracity-bench-registry-"))
    worktree = work / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(worktree), args.baseline],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    settings = {
        "VERACITY_BACKEND": args.backend,
        "VERACITY_EXPORT_DIR": str(work / "exports"),
        "VERACITY_STORE_ENABLED": "false",
        "VERACITY_DEVICE": "cpu",
    }
    servers: dict[str, Server] = {}
    try:
        # The baseline's own source comes first on the path, before this checkout's; the
        # shims make uvicorn's "auto" fall back to asyncio and h11, as this checkout uses.
        shims = work / "shims"
        for module in ("uvloop", "httptools"):
            (shims / module).mkdir(parents=True)
            (shims / module / "__init__.py").write_text(
                f"raise ImportError('{module} is kept out of the A/B comparison')\n"
            )
        baseline_env = settings | {"PYTHONPATH": f"{shims}{os.pathsep}{worktree / 'src'}"}
        servers["baseline"] = Server(args.checkpoint, baseline_env, work / "baseline.log")
        servers["registry"] = Server(args.checkpoint, settings, work / "registry.log")
        for server in servers.values():
            server.wait_ready()
        image = photo(640, 427, seed=1)
        for server in servers.values():  # warm both: first requests pay for allocation
            closed_loop(server.url, image, args.clients, 3)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for round_ in range(args.rounds):
            for name, server in servers.items():
                cpu_before = cpu_seconds(server.process.pid)
                result = closed_loop(server.url, image, args.clients, args.duration)
                served = result["rps"] * args.duration
                # The server's CPU per answered request: what throughput on a saturated
                # machine is made of, and far less sensitive than req/s to whatever else
                # the machine is doing meanwhile.
                result["cpu_ms_per_request"] = (
                    1000 * (cpu_seconds(server.process.pid) - cpu_before) / max(served, 1)
                )
                runs[name].append(result)
                print(
                    f"round {round_ + 1} {name:<9} {result['rps']:7.2f} req/s  "
                    f"p50 {result['p50_ms']:7.1f} ms  p99 {result['p99_ms']:7.1f} ms  "
                    f"CPU {result['cpu_ms_per_request']:6.1f} ms/req  "
                    f"failures {result['failures']}",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=False
        )
        shutil.rmtree(work, ignore_errors=True)

    median = {name: statistics.median(r["rps"] for r in results) for name, results in runs.items()}
    ratios = [r["rps"] / b["rps"] for r, b in zip(runs["registry"], runs["baseline"], strict=True)]
    ratio = statistics.median(ratios)
    cpu = {
        name: statistics.median(r["cpu_ms_per_request"] for r in results)
        for name, results in runs.items()
    }
    # Above 1: the registry needs no more CPU per request than the baseline.
    efficiency = cpu["baseline"] / cpu["registry"]
    failures = sum(r["failures"] for results in runs.values() for r in results)
    met = ratio >= TARGET and efficiency >= TARGET and failures == 0
    summary = {
        "baseline_ref": args.baseline,
        "backend": args.backend,
        "clients": args.clients,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "runs": runs,
        "median_rps": median,
        "round_ratios": [round(r, 3) for r in ratios],
        "throughput_ratio": round(ratio, 3),
        "median_cpu_ms_per_request": cpu,
        "cpu_efficiency_ratio": round(efficiency, 3),
        "target": f">= {TARGET}",
        "met": met,
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"baseline / registry CPU per request: {efficiency:.3f} (target >= {TARGET})\n"
        f"registry / baseline throughput, median of rounds {[round(r, 3) for r in ratios]}: "
        f"{ratio:.3f} (target >= {TARGET}): " + ("met" if met else "MISSED")
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
