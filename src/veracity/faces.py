"""Face detection and crops, for checkpoints trained on faces (``preprocess.face_crop``).

The detector is OpenCV's frontal-face Haar cascade, whose file ships inside the
opencv-python-headless wheel, so nothing is downloaded at run time. Alternatives were
checked before choosing: facenet-pytorch's MTCNN (weights in its wheel) requires
torch < 2.3, numpy < 2 and Pillow < 10.3, none of which can live beside this project's
pins; OpenCV 5 dropped the cascade files from its wheel, and OpenCV's YuNet detector needs
an ONNX model that no wheel ships. The cascade finds frontal and near-frontal faces; it
misses strong profiles, which then count as ``no_face``: an abstention, not a guess.

Crops follow the DFDC-winning pipeline: the box grows by ``margin`` of its size on each
side (a third by default), clipped to the frame, so the blending seam around a swapped
face stays in view.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Detection runs on a copy at most this large: faces a model can judge are far larger than
# the cascade's 24 px minimum at this scale, and detection cost grows with the pixels.
_DETECT_MAX_SIDE = 640
_MIN_FACE = 24


@dataclass(frozen=True)
class FaceBox:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def area(self) -> int:
        return (self.right - self.left) * (self.bottom - self.top)


class FaceDetector:
    """Thread-safe: each thread gets its own cascade (OpenCV's are not shared safely)."""

    def __init__(self, *, max_faces: int = 4) -> None:
        self.max_faces = max_faces
        self._local = threading.local()

    def _cascade(self) -> object:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            import cv2  # imported by face checkpoints only

            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise RuntimeError(f"OpenCV's face cascade could not be read from {path}")
            self._local.cascade = cascade
        return cascade

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in an RGB image, largest first, at most ``max_faces``."""
        width, height = image.size
        scale = min(1.0, _DETECT_MAX_SIDE / max(width, height))
        small = (
            image
            if scale == 1.0
            else image.resize(
                (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX
            )
        )
        grey = np.asarray(small.convert("L"))
        cascade: object = self._cascade()
        found = cascade.detectMultiScale(  # type: ignore[attr-defined]
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(_MIN_FACE, _MIN_FACE)
        )
        boxes = [
            FaceBox(
                left=int(x / scale),
                top=int(y / scale),
                right=min(width, int((x + w) / scale)),
                bottom=min(height, int((y + h) / scale)),
            )
            for x, y, w, h in (found if len(found) else [])
        ]
        boxes.sort(key=lambda b: b.area, reverse=True)
        return boxes[: self.max_faces]


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
