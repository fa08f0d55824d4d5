"""Labelled data as uploads: the bytes a client would send for each image of a data set, and
whether it is fake, for whatever judges them as the service does (the drift profile, the
INT8 check)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from veracity.errors import InvalidImageError
from veracity.images import load_rgb
from veracity.models import CLASS_NAMES
from veracity.training.pairs import PairDataset

Labelled = tuple[bytes, int]  # the upload, 1 if fake
_FAKE = CLASS_NAMES.index("fake")
# Frames of web-video pairs have no file encoding of their own; an upload of one is
# typically a high-quality JPEG.
_FRAME_QUALITY = 95


def variant_uploads(items: Iterable[tuple[Path, int, int | None]]) -> Iterator[Labelled]:
    """An image folder's items as uploads: each file as it is on disk, or re-encoded at the
    JPEG quality its variant was given (label: its class index)."""
    for path, label, quality in items:
        fake = int(label == _FAKE)
        if quality is None:
            yield Path(path).read_bytes(), fake
            continue
        try:
            image = load_rgb(path)
        except InvalidImageError:
            continue
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        yield buffer.getvalue(), fake


def _encode(image: np.ndarray, processing: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    picture = Image.fromarray(image)
    quality = processing.get("quality")
    if processing.get("kind") == "finish" and isinstance(quality, int):
        # The finish decoded its own encoding; saving again at its format and quality
        # gives the file it stood for (what the quality gate and the estimate then read).
        fmt = "WEBP" if processing.get("format") == "webp" else "JPEG"
        picture.save(buffer, format=fmt, quality=quality)
    else:
        picture.save(buffer, format="JPEG", quality=_FRAME_QUALITY)
    return buffer.getvalue()


def pair_uploads(pairs: PairDataset, limit: int | None = None) -> Iterator[Labelled]:
    """Corpus pairs at their current epoch as uploads: each pair's real image, then its
    fake (the first ``limit`` pairs)."""
    for index in range(len(pairs) if limit is None else min(limit, len(pairs))):
        finished = pairs.finished(index)
        yield _encode(finished.real, finished.processing), 0
        yield _encode(finished.fake, finished.processing), 1


def unlabelled(items: Iterable[Labelled]) -> Iterator[bytes]:
    return (data for data, _ in items)
