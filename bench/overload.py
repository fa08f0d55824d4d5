"""Overload, soak and shutdown run against the real server, with locust as the load generator.

Run with `make overload` (`.ci/run` runs it after the test suite). Loopback only; every phase
is bounded in time. It runs once per results store (`--store`, both by default: the embedded
SQLite file, then a throwaway PostgreSQL server it starts from the installed binaries and
removes afterwards), and each run:

1. starts `veracity serve` (the synthetic model by default; see --checkpoint) with a small
   admission queue and deadline, recording every verdict in that store;
2. measures capacity: a few closed-loop users with no think time;
3. offers 4x that capacity, open-loop, for a sustained period (the soak), sampling the
   server's RSS; accepted requests must keep a p99 within the deadline, and the excess
   must be shed with 503 at once rather than queued;
4. sends SIGTERM in the middle of a second overload: readiness fails, the process must
   exit 0 within the drain time, and no request the server had taken in may fail;
5. prints a summary, writes bench/results/overload.json (one report per store), and exits
   1 if a guarantee broke on either store.

A request the server "had taken in" is one its access log records (every request that
reached the app is logged, whatever its outcome). Requests whose connection was closed before
the server read them (refused at shutdown) are counted separately: the server did no work
for them, so a client can retry them elsewhere.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from server import API_KEY, BOUNDARY, Server, multipart  # bench/server.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The tests' throwaway PostgreSQL server (started as the postgres user when run as root).
from tests.pgserver import PostgresServer, find_bindir  # noqa: E402

LOCUST = ROOT / ".venv-load" / "bin" / "locust"


def start_server(workdir: Path, args: argparse.Namespace, database_url: str | None) -> Server:
    env = {
        **({"VERACITY_DATABASE_URL": database_url} if database_url else {}),
        "VERACITY_BACKEND": args.backend,
        "VERACITY_MAX_QUEUE": str(args.max_queue),
        "VERACITY_REQUEST_TIMEOUT_S": str(args.request_timeout),
        "VERACITY_SHUTDOWN_DRAIN_S": str(args.drain),
        "VERACITY_LOG_LEVEL": "INFO",  # the access log matches requests at shutdown
    }
    server = Server(args.checkpoint, env, workdir / "server.log")
    server.wait_ready(timeout=180)
    return server


def sample_rss(server: Server, stop: threading.Event, into: list[tuple[float, float]]) -> None:
    """Append (time, RSS MiB) every 0.5 s until ``stop`` or the process ends."""
    while not stop.is_set() and server.process.poll() is None:
        try:
            into.append((time.time(), server.rss_mib()))
        except (OSError, RuntimeError):
            return
        stop.wait(0.5)


def served_statuses(log: Path) -> dict[str, int]:
    """Request ID -> status of every /infer request in the server's access log."""
    statuses = {}
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "veracity.access" and entry.get("path") == "/infer":
                statuses[entry["request_id"]] = entry["status"]
    return statuses


UNIQUE_MARKER = b"unique:" + b"0" * 32


def upload_body(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    picture = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
    jpeg = io.BytesIO()
    picture.save(jpeg, format="JPEG", quality=90)
    # Room after the JPEG's end marker that the load generator overwrites per request:
    # every upload has its own bytes, as real traffic does, so the exact cache answers
    # none of them and the run measures the model (and the store recording each verdict).
    return multipart(jpeg.getvalue() + UNIQUE_MARKER)


def run_locust(
    server: Server, body: Path, record: Path, *, users: int, user_rps: float, seconds: int
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "OVERLOAD_BODY": str(body),
        "OVERLOAD_API_KEY": API_KEY,
        "OVERLOAD_BOUNDARY": BOUNDARY,
        "OVERLOAD_RECORD": str(record),
        "OVERLOAD_USER_RPS": str(user_rps),
        "OVERLOAD_UNIQUE_MARKER": UNIQUE_MARKER.decode(),
    }
    command = [
        str(LOCUST),
        "-f",
        str(ROOT / "bench" / "locustfile.py"),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "30",  # let requests in flight at the end finish
        "--host",
        server.url,
        "--only-summary",
        "--loglevel",
        "ERROR",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_locust(process: subprocess.Popen[bytes], record: Path) -> list[dict]:
    _, stderr = process.communicate(timeout=300)
    if not record.exists():
        raise SystemExit(f"locust wrote no records:\n{stderr.decode()[-3000:]}")
    return [json.loads(line) for line in record.read_text().splitlines() if line]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarize(records: list[dict], seconds: float) -> dict:
    by_status: dict[str, int] = {}
    for r in records:
        key = str(r["status"]) if r["status"] else f"conn:{r['error']}"
        by_status[key] = by_status.get(key, 0) + 1
    accepted = [r["ms"] for r in records if r["status"] == 200]
    return {
        "requests": len(records),
        "offered_rps": round(len(records) / seconds, 1),
        "accepted": len(accepted),
        "accepted_rps": round(len(accepted) / seconds, 1),
        "shed_503": by_status.get("503", 0),
        "deadline_504": by_status.get("504", 0),
        "by_status": by_status,
        "accepted_p50_ms": rounded(percentile(accepted, 50)),
        "accepted_p99_ms": rounded(percentile(accepted, 99)),
        "shed_p50_ms": rounded(percentile([r["ms"] for r in records if r["status"] == 503], 50)),
        "shed_p99_ms": rounded(percentile([r["ms"] for r in records if r["status"] == 503], 99)),
    }


def rss_summary(samples: list[tuple[float, float]], start: float, end: float) -> dict:
    window = [mib for t, mib in samples if start <= t <= end]
    third = max(1, len(window) // 3)
    first, last = window[:third], window[-third:]
    return {
        "samples": len(window),
        "first_third_mean_mib": round(statistics.mean(first), 1),
        "last_third_mean_mib": round(statistics.mean(last), 1),
        "max_mib": round(max(window), 1),
        "growth_mib": round(statistics.mean(last) - statistics.mean(first), 1),
        "series": [[round(t - start, 1), round(mib, 1)] for t, mib in samples if start <= t <= end],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The synthetic model: this run checks the service's own guarantees (shedding, no lost
    # work, bounded memory, a clean SIGTERM), which hold whatever the model; at 1/5 of the
    # real-photo demo's cost per image it reaches overload within CI's time budget.
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "checkpoints/synthetic.safetensors"
    )
    parser.add_argument(
        "--store", default="both", choices=["sqlite", "postgresql", "both"], help="results store"
    )
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--request-timeout", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=20.0)
    parser.add_argument("--overload-factor", type=float, default=4.0)
    parser.add_argument("--capacity-seconds", type=int, default=12)
    parser.add_argument("--soak-seconds", type=int, default=45)
    parser.add_argument("--shutdown-seconds", type=int, default=20)
    parser.add_argument("--sigterm-after", type=float, default=8.0)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/overload.json")
    args = parser.parse_args()
    if not LOCUST.exists():
        raise SystemExit(f"{LOCUST} not found: run `make overload` (it installs locust)")

    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    settings = {k: str(v) for k, v in vars(args).items()}
    report: dict = {"settings": settings, "stores": {}, "failures": []}
    for store in stores:
        workdir = Path(tempfile.mkdtemp(prefix=f"veracity-overload-{store}-"))
        if store == "sqlite":
            result = run_once(args, workdir, None)
        else:
            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("no PostgreSQL server binaries (apt-get install postgresql)")
            database = PostgresServer(bindir)
            try:
                database.start()
                result = run_once(args, workdir, database.create_database("overload"))
            finally:
                database.close()
        report["stores"][store] = result
        report["failures"] += [f"{store}: {failure}" for failure in result["failures"]]
        print(f"--- {store}")
        print_summary(result)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        "all guarantees held on " + " and ".join(stores)
        if not report["failures"]
        else "GUARANTEES BROKEN"
    )
    return 1 if report["failures"] else 0


def run_once(args: argparse.Namespace, workdir: Path, database_url: str | None) -> dict:
    """Capacity, the soak and SIGTERM under overload against one server and store."""
    body = workdir / "body.bin"
    body.write_bytes(upload_body(1280, 720))
    failures: list[str] = []
    report: dict = {"database": "postgresql" if database_url else "sqlite"}

    server = start_server(workdir, args, database_url)
    rss: list[tuple[float, float]] = []
    stop_sampling = threading.Event()
    threading.Thread(target=sample_rss, args=(server, stop_sampling, rss), daemon=True).start()
    try:
        # 1. Capacity: closed loop, a few users with no think time.
        records = wait_locust(
            run_locust(
                server,
                body,
                workdir / "capacity.jsonl",
                users=4,
                user_rps=1000,
                seconds=args.capacity_seconds,
            ),
            workdir / "capacity.jsonl",
        )
        capacity = summarize(records, args.capacity_seconds)
        report["capacity"] = capacity
        rate = max(1.0, capacity["accepted_rps"])

        # 2. Sustained overload (the soak): open loop at overload-factor x capacity.
        offered = rate * args.overload_factor
        t1 = time.time()
        records = wait_locust(
            run_locust(
                server,
                body,
                workdir / "soak.jsonl",
                users=args.users,
                user_rps=offered / args.users,
                seconds=args.soak_seconds,
            ),
            workdir / "soak.jsonl",
        )
        t2 = time.time()
        soak = summarize(records, args.soak_seconds)
        soak["target_offered_rps"] = round(offered, 1)
        # What the load generator managed to offer, in multiples of capacity (it shares the
        # CPUs, so it can fall short of the target).
        soak["overload_factor"] = round(soak["offered_rps"] / rate, 2)
        # The first 10 s include connection set-up and allocator warm-up.
        soak["rss"] = rss_summary(rss, t1 + 10, t2)
        report["overload"] = soak
        bad = {k: v for k, v in soak["by_status"].items() if k not in ("200", "503", "504")}
        if bad:
            failures.append(f"overload: answers other than 200/503/504: {bad}")
        if soak["shed_503"] == 0:
            failures.append("overload: nothing was shed; the load did not exceed capacity")
        p99 = soak["accepted_p99_ms"]
        if p99 is None or p99 > args.request_timeout * 1000:
            failures.append(f"overload: accepted p99 {p99} ms exceeds the deadline")
        # Locust shares the machine's CPUs with the server and needs several times more CPU
        # at 4x the rate, so some loss of goodput is the load generator's; a collapse is not.
        soak["goodput_ratio"] = round(soak["accepted_rps"] / rate, 2)
        if soak["goodput_ratio"] < 0.25:
            failures.append(
                f"overload: goodput collapsed to {soak['accepted_rps']}/s (capacity {rate}/s)"
            )
        growth = soak["rss"]["growth_mib"]
        if growth > max(64.0, 0.15 * soak["rss"]["first_third_mean_mib"]):
            failures.append(f"overload: RSS grew by {growth} MiB during the soak")

        # 3. SIGTERM in the middle of overload.
        record = workdir / "shutdown.jsonl"
        load = run_locust(
            server,
            body,
            record,
            users=args.users,
            user_rps=offered / args.users,
            seconds=args.shutdown_seconds,
        )
        time.sleep(args.sigterm_after)
        sigterm_at = time.time()
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            exit_code = server.process.wait(timeout=args.drain + 30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            exit_code = server.process.wait()
            failures.append("shutdown: the server did not exit within the drain time")
        exited_after = time.time() - sigterm_at
        records = wait_locust(load, record)
    finally:
        stop_sampling.set()
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)

    served = served_statuses(server.log)
    in_flight = [r for r in records if r["start"] < sigterm_at < r["start"] + r["ms"] / 1000]
    taken_in = [r for r in in_flight if r["request_id"] in served]
    lost = [r for r in taken_in if r["status"] != served[r["request_id"]]]
    failed = [r for r in taken_in if r["status"] not in (200, 503, 504)]
    refused_unread = [r for r in in_flight if r["request_id"] not in served]
    report["shutdown"] = {
        "exit_code": exit_code,
        "exited_after_s": round(exited_after, 2),
        "in_flight_at_sigterm": len(in_flight),
        "in_flight_taken_in": len(taken_in),
        "in_flight_taken_in_statuses": summarize(taken_in, 1)["by_status"],
        "failed_after_taken_in": len(failed),
        "answer_lost": len(lost),
        "closed_before_read": len(refused_unread),
        "after_sigterm": summarize([r for r in records if r["start"] >= sigterm_at], 1)[
            "by_status"
        ],
    }
    if exit_code != 0:
        failures.append(f"shutdown: exit code {exit_code}")
    if failed or lost:
        failures.append(f"shutdown: {len(failed)} failed and {len(lost)} lost in-flight requests")
    if not taken_in:
        failures.append("shutdown: no request was in flight at SIGTERM; the test proved nothing")
    report["failures"] = failures
    return report


def print_summary(report: dict) -> None:
    capacity, soak, down = report["capacity"], report["overload"], report["shutdown"]
    print(f"capacity: {capacity['accepted_rps']} req/s accepted (closed loop, 4 users)")
    print(
        f"overload: offered {soak['offered_rps']} req/s = {soak['overload_factor']}x capacity "
        f"(target {soak['target_offered_rps']}); "
        f"accepted {soak['accepted']} ({soak['accepted_rps']}/s), shed {soak['shed_503']} "
        f"(503), deadline {soak['deadline_504']} (504), goodput {soak['goodput_ratio']}x "
        f"capacity; accepted p50 "
        f"{soak['accepted_p50_ms']} ms, p99 {soak['accepted_p99_ms']} ms; shed p99 "
        f"{soak['shed_p99_ms']} ms"
    )
    rss = soak["rss"]
    print(
        f"memory: RSS {rss['first_third_mean_mib']} -> {rss['last_third_mean_mib']} MiB "
        f"(max {rss['max_mib']}, growth {rss['growth_mib']}) over {rss['samples']} samples"
    )
    print(
        f"shutdown: exit {down['exit_code']} after {down['exited_after_s']} s; in flight at "
        f"SIGTERM {down['in_flight_at_sigterm']}, taken in {down['in_flight_taken_in']} "
        f"{down['in_flight_taken_in_statuses']}, failed {down['failed_after_taken_in']}, lost "
        f"{down['answer_lost']}, closed before read {down['closed_before_read']}"
    )
    for failure in report["failures"]:
        print(f"FAILED: {failure}")


if __name__ == "__main__":
    sys.exit(main())
