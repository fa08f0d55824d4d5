"""Throughput and latency of the real service, against its in-process ceiling and the naive design.

Run with `make bench` (see bench/README.md). In one run, on one machine, it:

1. builds an efficientnet_b0 checkpoint (random weights: speed does not depend on them) unless
   --checkpoint is given, and four JPEGs of realistic sizes (a web image, 720p and 1080p
   video frames, a 12-megapixel phone photo);
2. measures the in-process ceiling: decode + preprocess + inference in a tight loop with the
   same backend, at the best batch size, and the in-process single-image latency;
3. starts `veracity serve` as configured (default: ONNX backend, micro-batching) and drives it
   with wrk at several concurrency levels, sampling the server's RSS;
4. starts the naive design (bench/naive_server.py: the model inside the request handler, one
   image at a time, full decode and timm's torchvision transform) and drives it the same way;
5. prints a table and writes results.json and results.png to --out.

Only loopback is used, and every load run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from server import API_KEY, BOUNDARY, Server, multipart  # bench/server.py

from veracity.checkpoint import load_checkpoint, save_checkpoint
from veracity.cpus import available_cpus
from veracity.images import load_rgb
from veracity.inference.predictor import create_predictor
from veracity.models import CLASS_NAMES, create_classifier, resolve_preprocess_config

IMAGES = {
    "web_640x427": (640, 427),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "12mp": (4032, 3024),
}

WRK_SCRIPT = r"""
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. os.getenv("BENCH_BOUNDARY")
wrk.headers["X-API-Key"] = os.getenv("BENCH_KEY")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def photo(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG: lighting, texture, shapes, blur and sensor noise (realistic size)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(
        rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    )
    image = small.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.03, 0.2) * min(width, height)
        draw.ellipse(
            (x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3))
        )
    image = image.filter(ImageFilter.GaussianBlur(1.0))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 4, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def in_process(
    checkpoint: Path, backend: str, image: bytes, export_dir: Path, seconds: float
) -> dict:
    """The ceiling (best batch size) and single-image latency, decode included."""
    loaded = load_checkpoint(checkpoint)
    device = torch.device("cpu")
    predictor = create_predictor(loaded, device, backend=backend, export_dir=export_dir)
    for _ in range(3):
        predictor.predict([predictor.preprocess(image)])
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        predictor.predict([predictor.preprocess(image)])
        latencies.append(time.perf_counter() - t0)
    ceiling = {}
    for batch_size in (1, 4, 8, 16):
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            predictor.predict([predictor.preprocess(image) for _ in range(batch_size)])
            done += batch_size
        ceiling[batch_size] = done / (time.perf_counter() - t0)
    best = max(ceiling, key=lambda b: ceiling[b])
    return {
        "single_p50_ms": 1000 * statistics.median(latencies),
        "ceiling_rps": ceiling[best],
        "ceiling_batch_size": best,
        "ceiling_by_batch_size": ceiling,
    }


def decode_ms(image: bytes, checkpoint: Path, runs: int = 10) -> float:
    preprocess = load_checkpoint(checkpoint).preprocess
    from veracity.preprocess import EvalTransform

    transform = EvalTransform(preprocess)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        transform(load_rgb(image, min_size=preprocess.min_decode_size))
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def wrk(server: Server, body: Path, script: Path, concurrency: int, seconds: float) -> dict:
    env = dict(os.environ, BENCH_BODY=str(body), BENCH_BOUNDARY=BOUNDARY, BENCH_KEY=API_KEY)
    rss: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            rss.append(server.rss_mib())

    sampler = threading.Thread(target=sample)
    sampler.start()
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{int(seconds)}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            server.url + "/infer",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    stop.set()
    sampler.join()
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON "))
    stats = json.loads(line.removeprefix("BENCH_JSON "))
    ok = stats["requests"] - stats["non2xx"]
    return {
        "concurrency": concurrency,
        "rps": ok / (stats["duration_us"] / 1e6),
        "p50_ms": stats["p50_us"] / 1000,
        "p95_ms": stats["p95_us"] / 1000,
        "p99_ms": stats["p99_us"] / 1000,
        "errors": stats["errors"] + stats["non2xx"],
        "rss_mib_first": rss[0] if rss else server.rss_mib(),
        "rss_mib_max": max(rss) if rss else server.rss_mib(),
    }


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    runs = results["service"]
    conc = [r["concurrency"] for r in runs]
    ax1.plot(
        conc,
        [r["rps"] for r in runs],
        "o-",
        label=f"service ({results['config']['backend']}, batching)",
    )
    ax1.plot(
        conc,
        [r["rps"] for r in results["naive"]],
        "s--",
        label="naive (eager, one image per request)",
    )
    ax1.axhline(
        results["in_process"]["ceiling_rps"], color="grey", ls=":", label="in-process ceiling"
    )
    ax1.set(
        xlabel="concurrent clients",
        ylabel="requests/s",
        title=f"Throughput, {results['config']['image']} JPEG",
    )
    ax1.legend(fontsize=8)
    for key, style in (("p50_ms", "o-"), ("p95_ms", "^-"), ("p99_ms", "v-")):
        ax2.plot(conc, [r[key] for r in runs], style, label=key.removesuffix("_ms"))
    ax2.set(xlabel="concurrent clients", ylabel="latency (ms)", title="Service latency")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="default: efficientnet_b0, random weights"
    )
    parser.add_argument("--backend", choices=("torch", "onnx"), default="onnx")
    parser.add_argument(
        "--image", choices=sorted(IMAGES), default="720p", help="image for the load runs"
    )
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load run")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print(
            "bench: wrk not found; install it (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="veracity-bench-"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        torch.manual_seed(0)
        model = create_classifier("efficientnet_b0")
        checkpoint = work / "efficientnet_b0.safetensors"
        save_checkpoint(
            checkpoint,
            model,
            architecture="efficientnet_b0",
            class_names=CLASS_NAMES,
            preprocess=resolve_preprocess_config(model),
            model_name="bench",
            model_version="0",
        )
    images = {name: photo(w, h, seed=i) for i, (name, (w, h)) in enumerate(IMAGES.items())}
    image = images[args.image]
    body = work / "body.bin"
    body.write_bytes(multipart(image))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    export_dir = work / "exports"
    concurrency = [int(c) for c in args.concurrency.split(",")]

    print(f"in-process ceiling ({args.backend}, {args.image}) ...", flush=True)
    ceiling = in_process(checkpoint, args.backend, image, export_dir, seconds=min(args.duration, 8))
    decode = {name: decode_ms(data, checkpoint) for name, data in images.items()}
    runs = {}
    configs = {
        "service": {
            "VERACITY_BACKEND": args.backend,
            "VERACITY_EXPORT_DIR": str(export_dir),
            "VERACITY_MAX_BATCH_SIZE": str(args.max_batch_size),
            "VERACITY_BATCH_WAIT_MS": str(args.batch_wait_ms),
        },
        "naive": {},
    }
    for name, env in configs.items():
        print(f"{name} server ...", flush=True)
        server = Server(checkpoint, env, args.out / f"{name}-server.log", naive=name == "naive")
        try:
            server.wait_ready()
            wrk(server, body, script, 1, 3)  # warm-up
            runs[name] = [wrk(server, body, script, c, args.duration) for c in concurrency]
        finally:
            server.stop()

    service_peak = max(r["rps"] for r in runs["service"])
    naive_peak = max(r["rps"] for r in runs["naive"])
    single = next(r for r in runs["service"] if r["concurrency"] == 1) if 1 in concurrency else None
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus_available": available_cpus(),
            "platform": sys.platform,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        "config": {
            "backend": args.backend,
            "image": args.image,
            "architecture": load_checkpoint(checkpoint).metadata.architecture,
            "max_batch_size": args.max_batch_size,
            "batch_wait_ms": args.batch_wait_ms,
            "duration_s": args.duration,
        },
        "in_process": ceiling,
        "decode_preprocess_ms": decode,
        "service": runs["service"],
        "naive": runs["naive"],
        "ratios": {
            "service_over_ceiling": service_peak / ceiling["ceiling_rps"],
            "service_over_naive": service_peak / naive_peak,
            "single_p50_minus_in_process_ms": (single["p50_ms"] - ceiling["single_p50_ms"])
            if single
            else None,
        },
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "results.png")

    print(
        f"\n{results['config']['architecture']}, backend {args.backend}, {args.image} JPEG, "
        f"{available_cpus()} CPUs, {results['date']}"
    )
    print(
        f"in-process: ceiling {ceiling['ceiling_rps']:.1f} img/s "
        f"(batch {ceiling['ceiling_batch_size']}), "
        f"single image p50 {ceiling['single_p50_ms']:.1f} ms"
    )
    print("decode+preprocess p50: " + ", ".join(f"{k} {v:.1f} ms" for k, v in decode.items()))
    header = ("design", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "RSS MiB")
    print("{:<8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>12}".format(*header))
    for name in ("service", "naive"):
        for r in runs[name]:
            rss = f"{r['rss_mib_first']:.0f}->{r['rss_mib_max']:.0f}"
            print(
                f"{name:<8} {r['concurrency']:>7} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} "
                f"{r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>7} {rss:>12}"
            )
    ratios = results["ratios"]
    print(
        f"service/ceiling {ratios['service_over_ceiling']:.2f}   "
        f"service/naive {ratios['service_over_naive']:.2f}   "
        f"single-request p50 - in-process p50 = {ratios['single_p50_minus_in_process_ms']:+.1f} ms"
    )
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
