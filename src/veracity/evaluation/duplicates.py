"""The near-duplicate set for "seen before": distinct pictures, each with a JPEG-q70
re-encode and a half-size copy (what a re-upload through a messenger or a CMS produces).

Distinct pictures are square crops of the natural photographs installed packages ship (six
per photograph, at random positions and sizes: neighbours from one photograph are the
hardest distinct pairs) and, to make up the count, images of the synthetic sample data.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from veracity.evaluation.photos import natural_photographs
from veracity.images import encode_jpeg
from veracity.sampledata import SampleDataSpec, generate_sample_data

CROPS_PER_PHOTO = 6


@dataclass(frozen=True)
class DuplicateCase:
    original: bytes  # PNG
    jpeg_q70: bytes
    half_size: bytes  # PNG


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def distinct_pictures(count: int, *, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    pictures: list[Image.Image] = []
    for path in natural_photographs():
        with Image.open(path) as opened:
            photo = opened.convert("RGB")
        width, height = photo.size
        for _ in range(CROPS_PER_PHOTO):
            side = int(min(width, height) * rng.uniform(0.45, 0.8))
            x = int(rng.integers(0, width - side + 1))
            y = int(rng.integers(0, height - side + 1))
            pictures.append(photo.crop((x, y, x + side, y + side)))
    if len(pictures) < count:
        with tempfile.TemporaryDirectory() as folder:
            per_class = (count - len(pictures) + 1) // 2
            generate_sample_data(
                Path(folder),
                seed=seed,
                spec=SampleDataSpec(train_per_class=per_class, val_per_class=0, image_size=256),
            )
            for path in sorted(Path(folder).rglob("*.*")):
                if len(pictures) >= count:
                    break
                if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
                    with Image.open(path) as opened:
                        pictures.append(opened.convert("RGB"))
    return pictures[:count]


def duplicate_cases(count: int = 200, *, seed: int = 0) -> list[DuplicateCase]:
    cases = []
    for picture in distinct_pictures(count, seed=seed):
        half = picture.resize(
            (max(1, picture.width // 2), max(1, picture.height // 2)), Image.Resampling.BILINEAR
        )
        cases.append(DuplicateCase(_png(picture), encode_jpeg(picture, 70), _png(half)))
    return cases
