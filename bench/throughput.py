"""veracity against its peers and against the machine: images per second of veracity in FP32
and INT8, LitServe doing the same work per image, and the naive design, side by side in one
run, with the true limit of this machine's cores computed from measured CPU cost.

Run with `make bench-throughput` (about 4 minutes on 2 cores; the first run adds about 2
more to build the 720p frames, the sample data and the INT8 graph into bench/.cache). In
one run:

1. The INT8 graph: `veracity quantize` builds the synthetic model's INT8 graph and checks it
   against FP32 into the export cache (bench/.cache/exports), calibrated and checked on
   synthetic sample data of the kind the model was trained on (`veracity make-sample-data`,
   another seed than its training set's). Its result is cached with the graph; only a
   missing or stale record is rebuilt. The check decides, as in production: a refused
   graph is never served here either.
2. The limit: in this process, one thread (torch and ONNX Runtime each with one intra-op
   thread), the CPU time per image of (a) decode and patches (`Predictor.prepare`, as the
   server's decode pool runs it, without the perceptual hash) and (b) the forward pass at
   batch 8 (`Predictor.predict`), for the same images. The cores can do no more than
   cores x 1000 / (a + b) images per second of that work; no server design can beat it,
   so veracity's images per second against it says how much of the machine its serving
   (HTTP, hand-offs, store, "seen before", logs) costs. The INT8 graph's limit is measured
   the same way whether or not it passed its check.
3. The servers, all started at once on loopback from the same export cache: veracity FP32,
   veracity INT8 (its `GET /model` must name the INT8 engine; a server that refused the
   graph serves FP32, says why in its log, and is stopped without a load run), LitServe
   (bench/litserve_server.py: its default process model and own batching, the same
   `Predictor` work per image on the same graph) and the naive design
   (bench/naive_server.py: the model in the request handler, one image at a time). The
   exact cache is off; veracity's store, "seen before" and INFO logs stay on, as deployed.
4. The load: wrk, one thread, `--connections` keep-alive connections posting distinct
   1280x720 JPEGs, as distinct uploads arrive: `--scenes` camera-like scenes, each a
   1280 px square whose 720-row windows at 15 offsets 40 px apart, each also mirrored,
   flipped and both, make 60 photos (3,840 for 64 scenes) whose 256-bit perceptual hashes
   differ by at least 84 bits, beyond "seen before"'s 40. Each server takes them in turn
   from where its last run stopped, so none sees a repeat until it has answered them all
   (the result says how many repeats it saw, if any). A run that repeats a few dozen
   photos, as the first version of this bench did, measures "seen before" finding and
   reading earlier answers on every request: 3.6 CPU-ms an image more for veracity (see
   bench/README.md). Each server is warmed up, then
   `--rounds` rounds of `--seconds` give each server one run, the order rotating each
   round, so that a change in the machine's other load falls on all of them. Only 200
   answers count. The server's CPU (its whole process group, from /proc: LitServe's API
   server and inference worker are child processes) is divided by the answers; "cores" is
   that CPU over the run's wall time, and "idle" the cores each server used in a few
   seconds when none was loaded (a polling loop shows there).

The machine's other load moves every figure but the limit's (CPU time, not wall time):
"cores" below the available cores says a server did not get the machine to itself. The
ratios "*_cpu_efficiency" (the limit's CPU per image over the server's) are CPU time too:
how near the limit a server could come with the cores to itself.

Goals (issue 23 part 3): veracity FP32 >= 0.9 x the FP32 limit; veracity INT8 >= 1.5 x
veracity FP32 and >= 0.9 x the INT8 limit. Exits 1 if one is missed, or cannot be measured
because the INT8 graph is not served (the result then holds the check's figures). Writes
bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import API_KEY, BOUNDARY, Server, multipart  # the bench folder is not a package
from verdicts import camera_scene, jpeg_90

from veracity.checkpoint import load_checkpoint
from veracity.cpus import available_cpus
from veracity.export import export_path
from veracity.inference.backends import OnnxBackend
from veracity.inference.precision import find_int8, int8_paths
from veracity.inference.predictor import create_predictor
from veracity.quantization.build import METHOD

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
# The synthetic model's training sizes (Makefile, synthetic-model): every scale it reads.
SAMPLE_SIZES = "128,160,192,256,320,384,512,640,768,1024"
SAMPLE_SEED = 1  # the model was trained and calibrated on seed 0's images
# 150 validation images a class (900 with their re-encodes) make the 99% bound a matter of
# 9 flipped verdicts, not 3: checked on 300, a graph moved 4 (0.9867, refused) where the
# same quantiser's graph moved 3 of 900 (0.9967). The 32 calibration images are drawn from
# 128 a class, of every size.
SAMPLE_COUNTS = ["--train-per-class", "128", "--val-per-class", "150"]
BATCH = 8  # veracity's and LitServe's largest batch, and the limit's
IDLE_SECONDS = 3.0
GOALS = {"fp32_over_limit": 0.9, "int8_over_fp32": 1.5, "int8_over_int8_limit": 0.9}

WRK_SCRIPT = r"""
local n = tonumber(os.getenv("BENCH_COUNT"))
local dir = os.getenv("BENCH_DIR")
local bodies = {}
for i = 0, n - 1 do
  local f = assert(io.open(dir .. "/" .. i .. ".body", "rb"))
  bodies[i + 1] = f:read("*a")
  f:close()
end
local headers = {
  ["Content-Type"] = "multipart/form-data; boundary=" .. os.getenv("BENCH_BOUNDARY"),
  ["X-API-Key"] = os.getenv("BENCH_KEY"),
}
-- One wrk thread, one Lua state: the connections take the bodies in turn.
local i = tonumber(os.getenv("BENCH_START") or "0") % n
request = function()
  i = i % n + 1
  return wrk.format("POST", "/infer", headers, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, ' ..
    '"p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


SCENES = 64
WINDOWS = range(0, 561, 40)  # first rows of a scene's 720-row windows
MIRRORS = 4  # as is, left-right, upside down, both


def frames(scenes: int) -> list[Path]:
    """``scenes`` x 60 distinct 720p JPEGs, cached in bench/.cache/frames-720p-distinct (the
    first run makes them: about 0.4 s a scene and 20 ms a photo). The first of each scene
    is bench/verdicts.py's ``frame_720p`` of that seed."""
    folder = CACHE / "frames-720p-distinct"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for seed in range(scenes):
        names = {
            (row, mirror): folder / f"{seed}-{row}-{mirror}.jpg"
            for row in WINDOWS
            for mirror in range(MIRRORS)
        }
        made += names.values()
        if all(path.is_file() for path in names.values()):
            continue
        scene = camera_scene(seed)
        for (row, mirror), path in names.items():
            window = scene[row : row + 720]
            window = window[:, ::-1] if mirror & 1 else window
            window = window[::-1] if mirror & 2 else window
            path.write_bytes(jpeg_90(window))
    return made


def int8_graph(checkpoint: Path, export_dir: Path, python: Path) -> dict[str, Any]:
    """Build and check the INT8 graph unless the cache already holds a verdict for these
    weights and this FP32 export; then what the check said."""
    loaded = load_checkpoint(checkpoint)
    fp32 = export_path(export_dir, loaded)
    lookup = find_int8(loaded, export_dir, fp32)
    # A record that failed its check is a verdict to keep unless another quantiser or
    # calibration made it; one that passed but is not served (another FP32 export, a
    # changed calibration) is stale.
    record = lookup.record
    kept = record is not None and not record.acceptance.passed and record.method == METHOD
    built = None
    if lookup.graph is None and not kept:
        data = CACHE / f"sample-seed{SAMPLE_SEED}-{SAMPLE_COUNTS[1]}"
        if not (data / "val").is_dir():
            say(f"synthetic sample data into {data} ...")
            make = [str(python.with_name("veracity")), "make-sample-data", "--out", str(data)]
            make += ["--seed", str(SAMPLE_SEED), "--sizes", SAMPLE_SIZES]
            subprocess.run([*make, *SAMPLE_COUNTS], check=True)
        say("veracity quantize (builds and checks the INT8 graph) ...")
        started = time.perf_counter()
        command = [str(python.with_name("veracity")), "quantize", "--checkpoint", str(checkpoint)]
        command += ["--data", str(data), "--export-dir", str(export_dir)]
        # Its exit code says whether the graph passed: the record below says it too.
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        built = round(time.perf_counter() - started, 1)
        lookup = find_int8(loaded, export_dir, fp32)
    record = lookup.record
    return {
        "graph": str(int8_paths(export_dir, loaded.metadata.weights_sha256)[0]),
        "servable": lookup.graph is not None,
        "why_not": lookup.reason or None,
        "check": record.acceptance.model_dump() if record else None,
        "failures": record.acceptance.failures if record else None,
        "calibration_data": record.calibration_data if record else None,
        "built_in_seconds": built,
    }


def limits(
    checkpoint: Path, export_dir: Path, images: list[bytes], int8: Path | None
) -> dict[str, Any]:
    """CPU milliseconds per image of decode + patches and of the batch-8 forward pass, on one
    thread, and the images per second the available cores could do of that work."""
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    predictor = create_predictor(
        load_checkpoint(checkpoint), cpu, backend="onnx", export_dir=export_dir, threads=1
    )
    for data in images[:4]:  # warm-up: allocators, decoders, the hash's first call
        predictor.prepare(data, robustness_check=False, perceptual_hash=True)
    started = time.process_time()
    tensors = [predictor.prepare(d, robustness_check=False).tensor for d in images]
    prepare_ms = 1000 * (time.process_time() - started) / len(images)
    # What "seen before" adds in the server's decode pool (not part of the limit's work).
    started = time.process_time()
    for data in images:
        predictor.prepare(data, robustness_check=False, perceptual_hash=True)
    hashed_ms = 1000 * (time.process_time() - started) / len(images)
    batches = [
        torch.stack(tensors[i : i + BATCH]) for i in range(0, len(tensors) - BATCH + 1, BATCH)
    ]
    engines = {"fp32": predictor.backend}
    if int8 is not None and int8.is_file():
        # Timed only, in this process, whatever its check said: never served unless it passed.
        engines["int8"] = OnnxBackend(int8, cpu, threads=1, name="onnx-int8")
    cores = available_cpus()
    out: dict[str, Any] = {
        "cores": cores,
        "prepare_cpu_ms": round(prepare_ms, 2),
        "perceptual_hash_cpu_ms": round(hashed_ms - prepare_ms, 2),
    }
    for name, engine in engines.items():
        predictor.backend = engine
        for batch in batches[:2]:  # warm-up
            predictor.predict(batch)
        started = time.process_time()
        for _ in range(2):
            for batch in batches:
                predictor.predict(batch)
        forward_ms = 1000 * (time.process_time() - started) / (2 * BATCH * len(batches))
        out[name] = {
            "forward_cpu_ms": round(forward_ms, 2),
            "cpu_ms_per_image": round(prepare_ms + forward_ms, 2),
            "images_per_second": round(cores * 1000 / (prepare_ms + forward_ms), 2),
        }
    return out


def group_cpu_seconds(group: int) -> float:
    """User + system CPU of every live process in a process group (a server and the
    processes it started), from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[2]) == group:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def alone(servers: dict[str, Server], name: str) -> None:
    """Let only ``name`` run: every other server's process group is stopped until its turn."""
    for other, server in servers.items():
        os.killpg(server.process.pid, signal.SIGCONT if other == name else signal.SIGSTOP)


def load(
    server: Server, bodies: Path, count: int, connections: int, seconds: int, *, start: int = 0
) -> dict:
    """One wrk run from the ``start``-th of the ``count`` bodies: successful answers per
    second, latency, errors, the server's CPU per answered image, the photos it had been
    sent by the end (a request in flight when wrk stopped was sent too) and how many of this
    run's it had been sent before."""
    env = dict(
        os.environ,
        BENCH_COUNT=str(count),
        BENCH_START=str(start),
        BENCH_DIR=str(bodies),
        BENCH_BOUNDARY=BOUNDARY,
        BENCH_KEY=API_KEY,
    )
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s"]
    command += ["-s", str(bodies / "load.lua"), server.url + "/infer"]
    before = group_cpu_seconds(server.process.pid)
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    used = group_cpu_seconds(server.process.pid) - before
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON "))
    stats = json.loads(line.removeprefix("BENCH_JSON "))
    ok = stats["requests"] - stats["non2xx"]
    elapsed = stats["duration_us"] / 1e6
    return {
        "images_per_second": round(ok / elapsed, 2),
        "answered": ok,
        "p50_ms": round(stats["p50_us"] / 1000, 1),
        "p99_ms": round(stats["p99_us"] / 1000, 1),
        "errors": stats["errors"] + stats["non2xx"],
        "cpu_ms_per_image": round(1000 * used / ok, 1) if ok else None,
        "cores_busy": round(used / elapsed, 2),
        "sent": start + stats["requests"] + connections,
        "repeats": max(0, start + stats["requests"] - count),
    }


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cpus_available": available_cpus(),
        "cpus_host": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    packages = ("veracity", "torch", "onnxruntime", "litserve", "fastapi", "uvicorn")
    found = {name: version(name) for name in packages}
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()
    return found | {"python": platform.python_version(), "wrk": wrk[1] if len(wrk) > 1 else "?"}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15, help="per server per round")
    parser.add_argument("--warmup", type=int, default=5, help="seconds per server, not counted")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--scenes", type=int, default=SCENES, help="scenes of 60 distinct 720p photos each"
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "checkpoints" / "synthetic.safetensors"
    )
    parser.add_argument("--export-dir", type=Path, default=CACHE / "exports")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "throughput.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk not found (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 2
    started = time.monotonic()
    about = {"machine": machine(), "versions": versions()}
    say(f"{args.scenes * 60} distinct 720p photos (cached in {CACHE}) ...")
    photos = frames(args.scenes)
    # The limit's images: one photo of each scene (each costs what its variants cost).
    images = [path.read_bytes() for path in photos[:: len(WINDOWS) * MIRRORS]]
    python = Path(sys.executable)
    int8 = int8_graph(args.checkpoint, args.export_dir, python)
    say(f"INT8 graph: {'passed its check' if int8['servable'] else 'refused'}")
    say("the limit: CPU per image in this process, one thread ...")
    limit = limits(args.checkpoint, args.export_dir, images, Path(int8["graph"]))

    veracity_env = {
        "VERACITY_BACKEND": "onnx",
        "VERACITY_CACHE_ENABLED": "false",
        "VERACITY_LOG_LEVEL": "INFO",
        "VERACITY_EXPORT_DIR": str(args.export_dir),
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    idle: dict[str, float] = {}
    int8_served: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="veracity-bench-throughput-") as tmp:
        work = Path(tmp)
        for i, photo in enumerate(photos):
            (work / f"{i}.body").write_bytes(multipart(photo.read_bytes()))
        (work / "load.lua").write_text(WRK_SCRIPT)
        servers: dict[str, Server] = {}
        for precision in ("fp32", "int8"):
            env = veracity_env | {
                "VERACITY_PRECISION": precision,
                "VERACITY_DATA_DIR": str(work / f"data-{precision}"),
            }
            servers[f"veracity {precision}"] = Server(
                args.checkpoint, env, work / f"veracity-{precision}.log"
            )
        servers["litserve"] = Server(
            args.checkpoint,
            {"LIT_SERVER_API_KEY": API_KEY},
            work / "litserve.log",
            command=[
                sys.executable,
                str(ROOT / "bench" / "litserve_server.py"),
                str(args.checkpoint.resolve()),
                str(args.export_dir.resolve()),
            ],
            ready_path="/health",
        )
        servers["naive"] = Server(
            args.checkpoint,
            {},
            work / "naive.log",
            command=[
                sys.executable,
                str(ROOT / "bench" / "naive_server.py"),
                str(args.checkpoint.resolve()),
                "--onnx",
                str(args.export_dir.resolve()),
            ],
        )
        try:
            say("servers starting: " + ", ".join(servers))
            for server in servers.values():
                server.wait_ready()
            engine = httpx.get(
                servers["veracity int8"].url + "/model", headers={"X-API-Key": API_KEY}, timeout=30
            ).json()["backend"]
            log = servers["veracity int8"].log.read_text()
            int8_served = {
                "engine": engine,
                "log": [line for line in log.splitlines() if "INT8" in line][-1:],
            }
            if engine != "onnx-int8":
                # It serves FP32: a second FP32 run would say nothing about INT8.
                servers.pop("veracity int8").stop()
            # What each costs doing nothing (a poll loop would show here), all at once.
            before = {name: group_cpu_seconds(s.process.pid) for name, s in servers.items()}
            time.sleep(IDLE_SECONDS)
            idle = {
                name: round((group_cpu_seconds(s.process.pid) - before[name]) / IDLE_SECONDS, 3)
                for name, s in servers.items()
            }
            # Photos each server was sent: its next run starts at the next one.
            sent = dict.fromkeys(servers, 0)
            for name, server in servers.items():
                say(f"warm-up: {name}")
                alone(servers, name)
                sent[name] = load(server, work, len(photos), args.connections, args.warmup)["sent"]
            names = list(servers)
            runs = {name: [] for name in names}
            for round_ in range(args.rounds):
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    # The others are stopped (SIGSTOP) meanwhile: a peer's idle poll loop
                    # (LitServe's about 0.2 cores) would otherwise take the measured one's CPU.
                    alone(servers, name)
                    run = load(
                        servers[name],
                        work,
                        len(photos),
                        args.connections,
                        args.seconds,
                        start=sent[name],
                    )
                    sent[name] = run["sent"]
                    runs[name].append(run)
                    say(
                        f"round {round_ + 1}/{args.rounds} {name}: "
                        f"{run['images_per_second']} img/s, p50 {run['p50_ms']} ms, "
                        f"{run['cpu_ms_per_image']} cpu-ms/img, {run['errors']} errors"
                    )
        finally:
            for server in servers.values():
                os.killpg(server.process.pid, signal.SIGCONT)
                server.stop()

    summary = {
        name: {
            key: statistics.median(r[key] for r in rounds if r[key] is not None)
            for key in ("images_per_second", "p50_ms", "p99_ms", "cpu_ms_per_image", "cores_busy")
        }
        | {
            "errors": sum(r["errors"] for r in rounds),
            "idle_cores": idle[name],
            "repeats": sum(r["repeats"] for r in rounds),
        }
        for name, rounds in runs.items()
        if rounds
    }

    def rate(name: str) -> float | None:
        return summary[name]["images_per_second"] if name in summary else None

    def cpu(name: str) -> float | None:
        return summary[name]["cpu_ms_per_image"] if name in summary else None

    int8_limit = limit.get("int8", {}).get("images_per_second")
    ratios = {
        "fp32_over_limit": ratio(rate("veracity fp32"), limit["fp32"]["images_per_second"]),
        "int8_over_fp32": ratio(rate("veracity int8"), rate("veracity fp32")),
        "int8_over_int8_limit": ratio(rate("veracity int8"), int8_limit),
        "int8_limit_over_fp32_limit": ratio(int8_limit, limit["fp32"]["images_per_second"]),
        "fp32_over_litserve": ratio(rate("veracity fp32"), rate("litserve")),
        "fp32_over_naive": ratio(rate("veracity fp32"), rate("naive")),
        "litserve_over_limit": ratio(rate("litserve"), limit["fp32"]["images_per_second"]),
        # The limit's CPU per image over the server's: how near the limit each could come
        # with the cores to itself. CPU time, so the machine's other load moves it little.
        "fp32_cpu_efficiency": ratio(limit["fp32"]["cpu_ms_per_image"], cpu("veracity fp32")),
        "int8_cpu_efficiency": ratio(
            limit.get("int8", {}).get("cpu_ms_per_image"), cpu("veracity int8")
        ),
        "litserve_cpu_efficiency": ratio(limit["fp32"]["cpu_ms_per_image"], cpu("litserve")),
    }
    goals = {
        name: {
            "measured": ratios[name],
            "at_least": least,
            "passed": ratios[name] is not None and ratios[name] >= least,
        }
        | ({"not_measurable": "the INT8 graph is not served"} if ratios[name] is None else {})
        for name, least in GOALS.items()
    }
    passed = all(goal["passed"] for goal in goals.values())
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **about,
        "setup": {
            "checkpoint": str(args.checkpoint.resolve().relative_to(ROOT)),
            "images": f"{len(photos)} distinct 1280x720 JPEGs ({args.scenes} scenes x 60)",
            "connections": args.connections,
            "rounds": args.rounds,
            "seconds_per_round": args.seconds,
            "veracity": "onnx, exact cache off, store, seen before and INFO logs on",
            "litserve": f"max_batch_size {BATCH}, batch_timeout 2 ms, one worker (default)",
        },
        "limit": limit,
        "int8": int8 | {"served": int8_served},
        "median": summary,
        "rounds": runs,
        "ratios": ratios,
        "goals": goals,
        "passed": passed,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "bench_seconds": round(time.monotonic() - started),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    cores = limit["cores"]
    print(
        f"\n{result['machine']['cpu']}, {cores} cores, load average at start "
        f"{result['machine']['load_average_at_start'][0]}; {args.connections} connections, "
        f"median of {args.rounds} x {args.seconds} s"
    )
    print(
        f"limit: prepare {limit['prepare_cpu_ms']} cpu-ms/img (+{limit['perceptual_hash_cpu_ms']}"
        " for the perceptual hash, not counted)"
        + "".join(
            f"; {name} forward {limit[name]['forward_cpu_ms']} -> "
            f"{limit[name]['images_per_second']} img/s"
            for name in ("fp32", "int8")
            if name in limit
        )
    )
    header = ("server", "img/s", "p50 ms", "p99 ms", "cpu-ms/img", "cores", "idle", "errors")
    print("{:<15} {:>7} {:>8} {:>8} {:>10} {:>6} {:>6} {:>7}".format(*header))
    for name, row in summary.items():
        print(
            f"{name:<15} {row['images_per_second']:>7.1f} {row['p50_ms']:>8.1f} "
            f"{row['p99_ms']:>8.1f} {row['cpu_ms_per_image']:>10.1f} {row['cores_busy']:>6.2f} "
            f"{row['idle_cores']:>6.3f} {row['errors']:>7}"
        )
    print(
        f"{'limit fp32':<15} {limit['fp32']['images_per_second']:>7.1f} {'':>8} {'':>8} "
        f"{limit['fp32']['cpu_ms_per_image']:>10.1f}"
    )
    if "int8" in limit:
        print(
            f"{'limit int8':<15} {limit['int8']['images_per_second']:>7.1f} {'':>8} {'':>8} "
            f"{limit['int8']['cpu_ms_per_image']:>10.1f}"
        )
    if not int8["servable"]:
        print(f"INT8 not served: {int8['why_not']}")
    for name, goal in goals.items():
        verdict = "met" if goal["passed"] else goal.get("not_measurable", "MISSED")
        print(f"{name:<22} {goal['measured']!s:>7} (>= {goal['at_least']}): {verdict}")
    shown = ("fp32_over_litserve", "fp32_over_naive", "litserve_over_limit")
    print("   ".join(f"{k} {ratios[k]}" for k in shown))
    shown = ("fp32_cpu_efficiency", "int8_cpu_efficiency", "litserve_cpu_efficiency")
    print("   ".join(f"{k} {ratios[k]}" for k in shown))
    print(f"wrote {args.out} ({result['bench_seconds']} s)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
