"""What honest verdicts cost: the gates' share of a forward pass, and the robustness check.

Run with `make bench-verdicts` (see bench/README.md). Targets, each a ratio measured in one
run on one machine (the issue "Verdicts that can be trusted"):

1. the gates add at most 10% to a batch-8 forward pass: in process, the same batch of eight
   prepared 720p frames through (a) the bare classifier (logits only) and (b) everything the
   service's inference thread runs: the forward pass with the gate's features (pixel
   statistics, stage features), the out-of-distribution scores, calibration and the
   verdict. Interleaved repetitions, medians compared. The quality gates run in the decode
   pool, not in the forward pass: their measurements are compared with the decode and
   preprocessing they follow, against the same 10%;
2. a robustness-checked request costs at most 3 plain ones: `veracity serve` as a real
   process, sequential POST /infer of the same 720p JPEG, alternating plain and
   ?robustness_check=true, median latencies compared.

Writes bench/results/verdicts.json; exits 1 if a target is missed. Loopback only; every loop
is bounded by --repeats.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image
from server import API_KEY, Server  # bench/server.py

from veracity.checkpoint import load_checkpoint
from veracity.images import load_image
from veracity.inference.predictor import Predictor
from veracity.sampledata import make_real
from veracity.verdicts.quality import measure

ROOT = Path(__file__).resolve().parents[1]
GATES_TARGET = 1.10
ROBUSTNESS_TARGET = 3.0


def camera_scene(seed: int) -> np.ndarray:
    """A 1280 px square camera-like scene (uint8 RGB), built like the demo's real images."""
    pixels = make_real(np.random.default_rng(seed), 1280)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def jpeg_90(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def frame_720p(seed: int) -> bytes:
    """A 1280x720 JPEG of a camera-like scene, so the gates see the kind of input they are
    calibrated for."""
    return jpeg_90(camera_scene(seed)[:720])


def gates_ratio(predictor: Predictor, frames: list[bytes], repeats: int) -> dict[str, float]:
    decoded = [load_image(f) for f in frames]
    batch = [predictor.transform(d.image) for d in decoded]
    inputs = torch.cat(batch)
    model = predictor.model
    qualities = [measure(d.image, d.jpeg_quality, d.size) for d in decoded]
    bare, gated = [], []
    with torch.inference_mode():
        for _ in range(3):  # warm-up of both paths
            model(inputs)
            predictor.predict(batch)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(inputs)
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            predictions = predictor.predict(batch)
            for prediction, quality in zip(predictions, qualities, strict=True):
                predictor.judge(prediction, quality)
            gated.append(time.perf_counter() - t0)
    bare_ms, gated_ms = statistics.median(bare) * 1000, statistics.median(gated) * 1000
    return {"bare_ms": bare_ms, "gated_ms": gated_ms, "ratio": gated_ms / bare_ms}


def quality_ratio(predictor: Predictor, frames: list[bytes], repeats: int) -> dict[str, float]:
    """Decode + preprocessing of the eight frames, without and with the quality gates."""
    plain, gated = [], []
    for _ in range(max(3, repeats // 4)):
        t0 = time.perf_counter()
        for frame in frames:
            decoded = load_image(frame)
            predictor.transform(decoded.image)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for frame in frames:
            decoded = load_image(frame)
            measure(decoded.image, decoded.jpeg_quality, decoded.size)
            predictor.transform(decoded.image)
        gated.append(time.perf_counter() - t0)
    plain_ms, gated_ms = statistics.median(plain) * 1000, statistics.median(gated) * 1000
    return {"plain_ms": plain_ms, "gated_ms": gated_ms, "ratio": gated_ms / plain_ms}


def robustness_ratio(checkpoint: Path, frame: bytes, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(checkpoint, {"VERACITY_MAX_BATCH_SIZE": "8"}, Path(tmp) / "server.log")
        try:
            server.wait_ready()
            headers = {"X-API-Key": API_KEY}
            files = {"file": ("frame.jpg", frame, "image/jpeg")}
            plain, checked = [], []
            with httpx.Client(base_url=server.url, timeout=60) as client:
                for _ in range(3):
                    client.post("/infer", files=files, headers=headers).raise_for_status()
                for _ in range(repeats):
                    for params, sink in (({}, plain), ({"robustness_check": "true"}, checked)):
                        t0 = time.perf_counter()
                        response = client.post(
                            "/infer", files=files, headers=headers, params=params
                        )
                        sink.append(time.perf_counter() - t0)
                        response.raise_for_status()
        finally:
            server.stop()
    plain_ms, checked_ms = statistics.median(plain) * 1000, statistics.median(checked) * 1000
    return {"plain_ms": plain_ms, "checked_ms": checked_ms, "ratio": checked_ms / plain_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "checkpoints" / "demo.safetensors"
    )
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    predictor = Predictor(load_checkpoint(args.checkpoint), torch.device("cpu"))
    frames = [frame_720p(seed) for seed in range(8)]
    gates = gates_ratio(predictor, frames, args.repeats)
    quality = quality_ratio(predictor, frames, args.repeats)
    robustness = robustness_ratio(args.checkpoint, frames[0], args.repeats)
    results = {
        "checkpoint": str(args.checkpoint),
        "torch_threads": torch.get_num_threads(),
        "gates_batch8": gates | {"target": GATES_TARGET},
        "quality_gates_decode": quality | {"target": GATES_TARGET},
        "robustness_request": robustness | {"target": ROBUSTNESS_TARGET},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "verdicts.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    missed = [
        name
        for name, value, target in (
            ("gates", gates["ratio"], GATES_TARGET),
            ("quality gates", quality["ratio"], GATES_TARGET),
            ("robustness", robustness["ratio"], ROBUSTNESS_TARGET),
        )
        if value > target
    ]
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
