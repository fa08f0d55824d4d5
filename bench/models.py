"""What the real-photo model costs: the synthetic model it replaced as the demo against it.

Run with `make bench-models` (about four minutes on 2 cores; see bench/README.md). Two
`veracity serve` processes on loopback, each measured in turn within every round (the
order swapped each round, so a drift in the machine's speed falls on both alike):

- baseline: checkpoints/synthetic.* as committed at HEAD (the demo model until the
  real-photo one replaced it: resnet10t, 64 px patches, 4x4 grid), copied out of git at
  start, since the working copy may be replaced meanwhile;
- candidate: checkpoints/demo.safetensors, the real-photo recipe (timm
  ``tf_efficientnet_lite0``, 256 px native-resolution patches, a 4x4 grid, "max" pooling,
  a longer side above 1024 px shrunk first). Cost does not depend on trained weights:
  ``--stand-in`` measures one written here with random weights and a calibration of the
  right shapes (the out-of-distribution gate runs as for a trained model), and
  ``--candidate PATH`` another checkpoint.

Each round, per server: sequential POST /infer of one 1280x720 JPEG (latency p50/p95, and
the server's own preprocess/inference times), then ``--clients`` concurrent clients for
``--duration`` seconds (images/s), then one POST /infer/video of a 32-frame 720p H.264 clip
(32 samples: every frame; time to verdict). Both servers run with the default settings
(backend auto, default deadlines), the exact cache and the results store off, so every
request reaches the model.

Reported: each measure for both servers, candidate/baseline ratios, the backend each server
chose, and patches (and model-input pixels) per image. This documents cost; the only
targets are regression guards on the candidate, from the service's own defaults:
its sequential 720p p50 at most request_timeout_s / max_batch_size (above it a full batch
of 720p uploads outlasts the request deadline), its video time to verdict at most
video_timeout_s / max_concurrent_videos (the videos the service admits at once, sharing the
machine, each still within the deadline), and no failed request. Exits 1 if one is missed.
Writes bench/results/models.json.
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
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from PIL import Image, ImageOps
from registry import closed_loop  # bench/registry.py
from server import API_KEY, Server, post_infer  # bench/server.py
from torch.utils.flop_counter import FlopCounterMode
from verdicts import frame_720p  # bench/verdicts.py

from veracity.checkpoint import (
    CalibrationMetadata,
    load_checkpoint,
    read_metadata,
    save_calibration,
    save_checkpoint,
)
from veracity.models import (
    CLASS_NAMES,
    create_classifier,
    feature_layers,
    resolve_preprocess_config,
)
from veracity.settings import Settings
from veracity.verdicts.ood import LayerStats, ReferenceStats
from video import make_clip  # bench/video.py

ROOT = Path(__file__).resolve().parents[1]
BASELINE_FILES = ("synthetic.safetensors", "synthetic.json", "synthetic.calibration.safetensors")
# The recipe being trained for issue 21 (see `veracity train --corpus` in the README).
CANDIDATE_ARCH = "tf_efficientnet_lite0"
CANDIDATE_PATCH = 256
CANDIDATE_GRID = 4
CANDIDATE_POOLING = "max"
CANDIDATE_MAX_SIDE = 1024
SAMPLES = 32
WIDTH, HEIGHT = 1280, 720
# A corpus source that is neither held out nor a face set: landscapes of 2.5-5K.
PHOTO_SOURCE = "lomiri-wallpapers-16.04"


def _default(name: str) -> float:
    return float(Settings.model_fields[name].default)


# Regression guards only (see the module docstring), from the service's defaults.
IMAGE_P50_BOUND_S = _default("request_timeout_s") / _default("max_batch_size")
VIDEO_BOUND_S = _default("video_timeout_s") / _default("max_concurrent_videos")


def baseline_checkpoint(folder: Path) -> Path:
    """checkpoints/synthetic.* as committed at HEAD, copied into ``folder``."""
    folder.mkdir(parents=True)
    for name in BASELINE_FILES:
        data = subprocess.run(
            ["git", "show", f"HEAD:checkpoints/{name}"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        (folder / name).write_bytes(data)
    return folder / BASELINE_FILES[0]


def stand_in_checkpoint(path: Path) -> Path:
    """The candidate recipe with random weights, calibrated with statistics of the right
    shapes (identity precisions, zero means), so serving runs the same gate arithmetic as
    for a trained model. Its verdicts mean nothing; its cost is the recipe's."""
    torch.manual_seed(0)
    model = create_classifier(CANDIDATE_ARCH).eval()
    # create_classifier zeroes the head; a random one keeps ONNX Runtime's parity check
    # (which compares logits) from passing trivially.
    head: Any = model
    torch.nn.init.normal_(head.get_classifier().weight, std=0.01)
    preprocess = replace(
        resolve_preprocess_config(model, image_size=CANDIDATE_PATCH),
        mode="patches",
        patch_grid=CANDIDATE_GRID,
        patch_pooling=CANDIDATE_POOLING,
        max_side=CANDIDATE_MAX_SIDE,
    )
    save_checkpoint(
        path,
        model,
        architecture=CANDIDATE_ARCH,
        class_names=CLASS_NAMES,
        preprocess=preprocess,
        model_name="veracity-photo-stand-in",
        model_version="0.0.0",
    )
    stats = ReferenceStats(
        tuple(
            LayerStats(torch.zeros(len(CLASS_NAMES), width), torch.eye(width), 1.0)
            for width in feature_layers(model, preprocess.input_size)
        )
    )
    save_calibration(
        path,
        stats,
        CalibrationMetadata(
            version=1,
            fitted_at=datetime.now(UTC),
            method="platt",
            slope=1.0,
            intercept=0.0,
            reference_sha256="0" * 64,
            # Never out of distribution: every image takes the whole path to a verdict.
            ood_threshold=1e9,
            ood_rule="stand-in for a cost benchmark",
            data="none",
            images={"reference": 0, "calibration": 0},
        ),
    )
    return path


def photo_720p() -> tuple[bytes, str]:
    """A 1280x720 JPEG (quality 90): a corpus landscape cropped to 16:9 when the corpus is
    there (`veracity fetch-corpus`), else a synthetic camera-like frame."""
    folder = ROOT / "data" / "corpus" / PHOTO_SOURCE
    for path in sorted(folder.rglob("*.jpg")) if folder.is_dir() else []:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        if image.width < WIDTH or image.height < HEIGHT:
            continue
        image = ImageOps.fit(image, (WIDTH, HEIGHT), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        return buffer.getvalue(), str(path.relative_to(ROOT))
    return frame_720p(0), "synthetic (veracity.sampledata.make_real)"


def forward_gflops(checkpoint: Path) -> float:
    """GFLOPs of one image's forward pass (all its patches), counted by torch: convolutions
    and matrix products, two per multiply-add. Unlike the timings, free of the machine's
    noise."""
    loaded = load_checkpoint(checkpoint, with_calibration=False)
    pre = loaded.preprocess
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        loaded.model.eval()(torch.zeros(pre.patches_per_image, *pre.input_size))
    return round(counter.get_total_flops() / 1e9, 2)


def describe(url: str, checkpoint: Path) -> dict[str, Any]:
    """What the server loaded: its backend (from /model) and, from the checkpoint's
    metadata (which /model does not carry in full), the patches per image."""
    body = httpx.get(f"{url}/model", headers={"X-API-Key": API_KEY}, timeout=30).json()
    pre = read_metadata(checkpoint).preprocess
    patches = pre.patch_grid**2 if pre.mode == "patches" else 1
    return {
        "model": f"{body['model_name']} {body['model_version']}",
        "architecture": body["architecture"],
        "backend": body["backend"],
        "patch_size": list(pre.input_size[1:]),
        "patches_per_image": patches,
        "model_input_pixels": patches * pre.input_size[1] * pre.input_size[2],
        "max_side": pre.max_side,
        "pooling": pre.patch_pooling,
        "calibrated": body["calibration"] is not None,
        "metrics": body["metrics"],
    }


def sequential(url: str, image: bytes, count: int) -> dict[str, Any]:
    """``count`` POST /infer one after another: client latency and the server's times."""
    out: dict[str, Any] = {"latency_ms": [], "preprocess_ms": [], "inference_ms": []}
    failures = 0
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(count):
            elapsed_ms, response = post_infer(client, image)
            if response.status_code != 200:
                failures += 1
                continue
            timings = response.json()["timings_ms"]
            out["latency_ms"].append(elapsed_ms)
            out["preprocess_ms"].append(timings.get("preprocess", float("nan")))
            out["inference_ms"].append(timings.get("inference", float("nan")))
    out["failures"] = failures
    return out


def post_clip(url: str, clip: bytes) -> dict[str, Any]:
    """One POST /infer/video of the clip, all 32 frames sampled: time to verdict."""
    with httpx.Client(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        response = client.post(
            "/infer/video",
            files={"file": ("clip.mp4", clip, "video/mp4")},
            headers={"X-API-Key": API_KEY},
            params={"frames": SAMPLES},
        )
        elapsed = time.perf_counter() - started
    if response.status_code != 200:
        return {"seconds": None, "status": response.status_code}
    body = response.json()
    return {
        "seconds": elapsed,
        "status": 200,
        "frames_analysed": body["frames_analysed"],
        "frames_decoded": body["frames_decoded"],
        "decode_ms": body["timings_ms"]["decode"],
    }


def one_round(url: str, image: bytes, clip: bytes, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "sequential": sequential(url, image, args.sequential),
        "concurrent": closed_loop(url, image, args.clients, args.duration),
        "video": post_clip(url, clip),
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's rounds pooled: latency percentiles over every sequential request,
    medians over rounds for throughput and video."""
    seq: dict[str, list[float]] = {"latency_ms": [], "preprocess_ms": [], "inference_ms": []}
    for r in rounds:
        for key in seq:
            seq[key] += r["sequential"][key]
    videos = [r["video"]["seconds"] for r in rounds if r["video"]["seconds"] is not None]
    return {
        "image_p50_ms": percentile(seq["latency_ms"], 50),
        "image_p95_ms": percentile(seq["latency_ms"], 95),
        "image_server_preprocess_p50_ms": percentile(seq["preprocess_ms"], 50),
        "image_server_inference_p50_ms": percentile(seq["inference_ms"], 50),
        "images_per_s": statistics.median(r["concurrent"]["rps"] for r in rounds),
        "video_p50_s": statistics.median(videos) if videos else None,
        "failures": int(
            sum(r["sequential"]["failures"] + r["concurrent"]["failures"] for r in rounds)
            + sum(r["video"]["seconds"] is None for r in rounds)
        ),
    }


def ratios(baseline: dict[str, Any], candidate: dict[str, Any]) -> dict[str, float | None]:
    keys = ("image_p50_ms", "image_p95_ms", "images_per_s", "video_p50_s")
    out: dict[str, float | None] = {}
    for key in keys:
        b, c = baseline[key], candidate[key]
        out[key] = round(c / b, 2) if b and c is not None else None
    return out


def round_ratios(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, float]]:
    """Each round's candidate/baseline ratios: the two ran back to back, so a drift in
    the machine's speed over the run cancels out of each."""
    out = []
    for b, c in zip(runs["baseline"], runs["candidate"], strict=True):
        b_p50 = percentile(b["sequential"]["latency_ms"], 50)
        c_p50 = percentile(c["sequential"]["latency_ms"], 50)
        b_rps, c_rps = b["concurrent"]["rps"], c["concurrent"]["rps"]
        out.append(
            {
                "image_p50": round(c_p50 / b_p50, 2),
                "images_per_s": round(c_rps / b_rps, 3) if b_rps else float("nan"),
            }
        )
    return out


def guards(candidate: dict[str, Any], failures: int) -> dict[str, dict[str, Any]]:
    video_s = candidate["video_p50_s"]
    return {
        "candidate_image_p50_s": {
            "measured": round(candidate["image_p50_ms"] / 1000, 3),
            "bound": IMAGE_P50_BOUND_S,
            "met": candidate["image_p50_ms"] / 1000 <= IMAGE_P50_BOUND_S,
        },
        "candidate_video_p50_s": {
            "measured": None if video_s is None else round(video_s, 2),
            "bound": VIDEO_BOUND_S,
            "met": video_s is not None and video_s <= VIDEO_BOUND_S,
        },
        "no_failed_request": {"measured": failures, "bound": 0, "met": failures == 0},
    }


def measure(
    servers: dict[str, Server], image: bytes, clip: bytes, args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for server in servers.values():  # warm-up: first requests pay for allocation
        sequential(server.url, image, 2)
        post_clip(server.url, clip)
    names = list(servers)
    for round_ in range(args.rounds):
        # ABBA: each server goes first in every other round.
        for name in names if round_ % 2 == 0 else names[::-1]:
            result = one_round(servers[name].url, image, clip, args)
            runs[name].append(result)
            lat = result["sequential"]["latency_ms"]
            print(
                f"round {round_ + 1} {name:<9} 720p p50 {percentile(lat, 50):7.1f} ms  "
                f"{result['concurrent']['rps']:6.2f} img/s ({args.clients} clients)  "
                f"video {result['video']['seconds'] or float('nan'):6.2f} s",
                flush=True,
            )
    return runs


def report(summary: dict[str, Any]) -> None:
    rows = [
        ("720p /infer p50 (ms)", "image_p50_ms"),
        ("720p /infer p95 (ms)", "image_p95_ms"),
        ("server preprocess p50 (ms)", "image_server_preprocess_p50_ms"),
        ("server inference p50 (ms)", "image_server_inference_p50_ms"),
        (f"images/s, {summary['clients']} clients", "images_per_s"),
        ("32-frame video, p50 (s)", "video_p50_s"),
    ]
    base, cand = summary["summary"]["baseline"], summary["summary"]["candidate"]
    print(f"{'':30} {'baseline':>10} {'candidate':>10} {'ratio':>7}")
    for label, key in rows:
        b, c = base[key], cand[key]
        ratio = c / b if b and c is not None else float("nan")
        print(f"{label:30} {b or float('nan'):10.2f} {c or float('nan'):10.2f} {ratio:7.2f}")
    for name, server in summary["servers"].items():
        print(
            f"{name}: {server['architecture']} on {server['backend']}, "
            f"{server['patches_per_image']} patches of {server['patch_size']} per image, "
            f"{server['gflops_per_image']} GFLOPs"
        )
    for name, guard in summary["guards"].items():
        verdict = "met" if guard["met"] else "MISSED"
        print(f"guard {name}: {guard['measured']} (bound {guard['bound']:g}) {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--candidate",
        type=Path,
        default=ROOT / "checkpoints" / "demo.safetensors",
        help="the checkpoint to measure (default: the demo model)",
    )
    parser.add_argument(
        "--stand-in", action="store_true", help="measure the recipe with random weights instead"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=10, help="requests per round")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8.0, help="concurrent s per round")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "models.json")
    args = parser.parse_args()

    image, image_source = photo_720p()
    clip_path = make_clip(ROOT / "bench" / ".cache" / "clip-720p-32f.mp4", WIDTH, HEIGHT, 1, 32)
    clip = clip_path.read_bytes()
    work = Path(tempfile.mkdtemp(prefix="veracity-bench-models-"))
    servers: dict[str, Server] = {}
    try:
        candidate = (
            stand_in_checkpoint(work / "candidate" / "m.safetensors")
            if args.stand_in
            else args.candidate
        )
        checkpoints = {"baseline": baseline_checkpoint(work / "baseline"), "candidate": candidate}
        gflops = {name: forward_gflops(path) for name, path in checkpoints.items()}
        settings = {
            "VERACITY_BACKEND": "auto",
            "VERACITY_DEVICE": "cpu",
            "VERACITY_EXPORT_DIR": str(work / "exports"),
            "VERACITY_STORE_ENABLED": "false",
            "VERACITY_CACHE_ENABLED": "false",
        }
        for name, checkpoint in checkpoints.items():
            servers[name] = Server(checkpoint, settings, work / f"{name}.log")
        started = time.monotonic()
        for server in servers.values():
            server.wait_ready()
        print(f"both servers ready in {time.monotonic() - started:.0f} s", flush=True)
        described = {
            name: describe(s.url, checkpoints[name]) | {"gflops_per_image": gflops[name]}
            for name, s in servers.items()
        }
        runs = measure(servers, image, clip, args)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    summaries = {name: summarise(results) for name, results in runs.items()}
    checks = guards(summaries["candidate"], sum(s["failures"] for s in summaries.values()))
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "image": {"source": image_source, "size": [WIDTH, HEIGHT], "bytes": len(image)},
        "clip": {"path": str(clip_path.relative_to(ROOT)), "frames": SAMPLES, "bytes": len(clip)},
        "candidate_checkpoint": "stand-in" if args.stand_in else str(args.candidate),
        "rounds": args.rounds,
        "sequential_per_round": args.sequential,
        "clients": args.clients,
        "duration_s": args.duration,
        "servers": described,
        "summary": summaries,
        "ratios_candidate_over_baseline": ratios(summaries["baseline"], summaries["candidate"]),
        "round_ratios": round_ratios(runs),
        "guards": checks,
        "met": all(g["met"] for g in checks.values()),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    report(summary)
    return 0 if summary["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
