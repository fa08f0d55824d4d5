"""Where an edit goes and how it writes: the input checks, a region drawn at a requested
share of the image, and the one function every edit writes its pixels through.

Every edit builds a candidate for the pixels of its region and hands it to ``write``,
which copies the original and replaces the region's pixels only. The mask an edit returns
is that region, so a pixel outside it is bit-identical to the original by construction,
and every changed pixel is inside it. A pixel inside it may keep its value where the edit
happens to produce the old value (a flat patch smoothed, a soft edge rounding back), so
``mask`` equals ``(edited != original).any(-1)`` up to exactly those pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]
Params = dict[str, float | int | str]

# Below this an edited region is a handful of pixels and the area range cannot be met.
MIN_SIDE = 64
DEFAULT_AREA = (0.03, 0.15)
_MAX_AREA = 0.5
_REGION_TRIES = 50


@dataclass(frozen=True)
class Edit:
    """An edited image, the pixels the edit wrote, its kind and what was drawn for it."""

    image: Image
    mask: Mask
    kind: str
    params: Params


@dataclass(frozen=True)
class Box:
    """A rectangle of pixels: rows ``top:bottom``, columns ``left:right``."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def check_image(image: object, name: str = "image") -> Image:
    """``image`` as 8-bit RGB of at least ``MIN_SIDE`` px a side, else a ValueError."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"{name} must be a numpy uint8 array, not {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be HxWx3 RGB, got shape {image.shape}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"{name} is {width}x{height}; edits need at least {MIN_SIDE} px a side")
    return image


def check_area(area: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(a) for a in area)
    if not 0.0 < low <= high <= _MAX_AREA:
        raise ValueError(f"area must satisfy 0 < low <= high <= {_MAX_AREA}, got {area}")
    return low, high


def box_around(mask: Mask, pad: int = 0) -> Box:
    """The mask's bounding box grown by ``pad`` on each side, clipped to the image."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("the region is empty")
    height, width = mask.shape
    return Box(
        top=max(0, int(rows[0]) - pad),
        left=max(0, int(cols[0]) - pad),
        bottom=min(height, int(rows[-1]) + 1 + pad),
        right=min(width, int(cols[-1]) + 1 + pad),
    )


def _unit_shape(rng: np.random.Generator) -> tuple[npt.NDArray[np.float64], str]:
    # A star-shaped polygon (sorted angles, so never self-intersecting) or an ellipse,
    # stretched and turned: object-like outlines rather than rectangles a model could key on.
    if rng.random() < 0.3:
        shape, angles, radii = "ellipse", np.linspace(0.0, 2 * math.pi, 48, endpoint=False), None
    else:
        count = int(rng.integers(4, 13))
        shape, angles = "polygon", np.sort(rng.uniform(0.0, 2 * math.pi, count))
        radii = rng.uniform(0.55, 1.0, count)
    aspect = rng.uniform(0.6, 1.6)
    turn = rng.uniform(0.0, math.pi)
    r = np.ones_like(angles) if radii is None else radii
    x, y = r * np.cos(angles) * aspect, r * np.sin(angles) / aspect
    points = np.stack(
        [x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)], axis=1
    )
    return points, shape


def _polygon_area(points: npt.NDArray[np.float64]) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def draw_region(
    rng: np.random.Generator,
    height: int,
    width: int,
    area: tuple[float, float] = DEFAULT_AREA,
    *,
    margin: int = 0,
) -> tuple[Mask, Params]:
    """A region covering a share of the image drawn uniformly from ``area``.

    The region keeps ``margin`` px from every border. Raises ValueError when no region of
    that size fits (an image too small for the area and margin asked).
    """
    low, high = check_area(area)
    for _ in range(_REGION_TRIES):
        target = rng.uniform(low, high)
        unit, shape = _unit_shape(rng)
        points = unit * math.sqrt(target * height * width / _polygon_area(unit))
        lo, hi = points.min(axis=0), points.max(axis=0)
        room_x, room_y = width - 2 * margin - (hi[0] - lo[0]), height - 2 * margin - (hi[1] - lo[1])
        if room_x < 2 or room_y < 2:
            continue
        offset = np.array([margin + rng.uniform(1, room_x), margin + rng.uniform(1, room_y)]) - lo
        canvas = np.zeros((height, width), np.uint8)
        cv2.fillPoly(canvas, [np.round(points + offset).astype(np.int32)], 1)
        mask = canvas.astype(bool)
        fraction = float(mask.mean())
        if low <= fraction <= high:
            return mask, {"shape": shape, "area_fraction": round(fraction, 5)}
    raise ValueError(
        f"no region of {low:.0%}-{high:.0%} of a {width}x{height} image fits "
        f"{margin} px from the borders"
    )


def write(
    original: Image,
    patch: npt.NDArray[np.floating] | Image,
    region: Mask,
    box: Box,
    alpha: npt.NDArray[np.floating] | None = None,
) -> Image:
    """The original with the region's pixels replaced from ``patch`` (the pixels of ``box``).

    ``alpha`` (the box's shape, 0..1) blends the patch over the original inside the region;
    outside the region nothing is written, whatever the patch or alpha hold there.
    """
    out = original.copy()
    inside = region[box.slices]
    view = out[box.slices]
    if alpha is None:
        source = np.asarray(patch, dtype=np.float64)
    else:
        weight = np.asarray(alpha, dtype=np.float64)[..., None]
        source = weight * np.asarray(patch, dtype=np.float64) + (1.0 - weight) * view
    view[inside] = np.clip(np.rint(source[inside]), 0, 255).astype(np.uint8)
    return out


def to_bgr(image: Image) -> Image:
    return np.ascontiguousarray(image[..., ::-1])


def feather(region: Mask, width: float) -> npt.NDArray[np.float64]:
    """A ramp from ``1/width`` at the region's edge to 1 at ``width`` px inside it, 0 outside.

    Its support is exactly the region, so a feathered edit still writes only the region.
    """
    # Padded with outside, so a region reaching the array's edge still ramps there.
    padded = np.pad(region, 1).astype(np.uint8)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    return np.asarray(np.clip(distance / max(width, 1.0), 0.0, 1.0), dtype=np.float64)


def working_size(image: Image, max_side: int, min_side: int) -> Image:
    """``image`` shrunk (area) so its longest side is at most ``max_side``, or enlarged
    (bicubic) so its shortest is at least ``min_side``; as it is when it fits."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    scale = max(scale, min_side / min(height, width))
    if scale == 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(image, size, interpolation=interpolation), dtype=np.uint8)
