"""A region re-rendered from its own pixels: through a lower resolution, smoothed or
denoised, or re-compressed as JPEG on a shifted 8x8 grid.

Each works on the region's box grown by a margin wider than its filter reaches, so the
region's new pixels are those the filter would give on the whole image, at the cost of
the box only; ``write`` then keeps nothing but the region.
"""

from __future__ import annotations

import cv2
import numpy as np

from veracity.edits.regions import (
    DEFAULT_AREA,
    Edit,
    Image,
    box_around,
    check_image,
    draw_region,
    to_bgr,
    write,
)

SMOOTHERS = ("gaussian", "bilateral", "nl_means")
_UPSCALERS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
# Wider than the widest filter here reaches: Gaussian sigma 4 (12 px), NL-means 7 + 21 px.
_MARGIN = 16
_GRID = 8


def low_resolution(
    image: Image, rng: np.random.Generator, *, area: tuple[float, float] = DEFAULT_AREA
) -> Edit:
    """A region downscaled 2-4x and upscaled back, as an upscaler or a generator leaves it."""
    check_image(image)
    region, params = draw_region(rng, image.shape[0], image.shape[1], area)
    box = box_around(region, _MARGIN)
    factor = float(rng.uniform(2.0, 4.0))
    name = list(_UPSCALERS)[int(rng.integers(len(_UPSCALERS)))]
    crop = image[box.slices]
    small = cv2.resize(
        crop,
        (max(1, round(box.width / factor)), max(1, round(box.height / factor))),
        interpolation=cv2.INTER_AREA,
    )
    patch = cv2.resize(small, (box.width, box.height), interpolation=_UPSCALERS[name])
    edited = write(image, np.asarray(patch, dtype=np.uint8), region, box)
    params |= {"factor": round(factor, 3), "upscaler": name}
    return Edit(edited, region, "low_resolution", params)


def smooth(
    image: Image,
    rng: np.random.Generator,
    *,
    area: tuple[float, float] = DEFAULT_AREA,
    method: str | None = None,
) -> Edit:
    """A region smoothed flat (Gaussian, bilateral, or NL-means denoised), as a generator
    leaves skin or sky; ``method`` one of ``SMOOTHERS`` or drawn."""
    check_image(image)
    if method is not None and method not in SMOOTHERS:
        raise ValueError(f"method must be one of {SMOOTHERS}, not {method!r}")
    region, params = draw_region(rng, image.shape[0], image.shape[1], area)
    box = box_around(region, _MARGIN)
    chosen = method if method is not None else SMOOTHERS[int(rng.integers(len(SMOOTHERS)))]
    crop = np.ascontiguousarray(image[box.slices])
    if chosen == "gaussian":
        sigma = float(rng.uniform(1.5, 4.0))
        patch = cv2.GaussianBlur(crop, (0, 0), sigma)
        params["sigma"] = round(sigma, 3)
    elif chosen == "bilateral":
        colour, space = float(rng.uniform(40.0, 120.0)), float(rng.uniform(4.0, 10.0))
        patch = cv2.bilateralFilter(crop, 9, colour, space)
        params |= {"sigma_colour": round(colour, 2), "sigma_space": round(space, 2)}
    else:
        strength = float(rng.uniform(8.0, 20.0))
        denoised = cv2.fastNlMeansDenoisingColored(to_bgr(crop), None, strength, strength, 7, 21)
        patch = np.ascontiguousarray(np.asarray(denoised)[..., ::-1])
        params["strength"] = round(strength, 2)
    edited = write(image, np.asarray(patch, dtype=np.uint8), region, box)
    params["method"] = chosen
    return Edit(edited, region, "smooth", params)


def recompress(
    image: Image, rng: np.random.Generator, *, area: tuple[float, float] = DEFAULT_AREA
) -> Edit:
    """A region re-compressed as JPEG (quality 30-95) on an 8x8 grid shifted by 1-7 px.

    The crop encoded starts 1-7 px off the image's own grid on each axis, so the region's
    block boundaries do not line up with those of the rest of the image.
    """
    check_image(image)
    # A margin of one block lets the crop start up to 7 px before the region's box.
    region, params = draw_region(rng, image.shape[0], image.shape[1], area, margin=_GRID)
    box = box_around(region)
    shift_y, shift_x = (int(s) for s in rng.integers(1, _GRID, size=2))
    top = box.top - (box.top - shift_y) % _GRID
    left = box.left - (box.left - shift_x) % _GRID
    crop = image[top : box.bottom, left : box.right]
    quality = int(rng.integers(30, 96))
    ok, encoded = cv2.imencode(".jpg", to_bgr(crop), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the region as JPEG")
    decoded = np.asarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR), dtype=np.uint8)[..., ::-1]
    patch = decoded[box.top - top :, box.left - left :]
    edited = write(image, patch, region, box)
    params |= {"quality": quality, "grid_shift_x": shift_x, "grid_shift_y": shift_y}
    params |= {"crop_left": left, "crop_top": top}
    return Edit(edited, region, "recompress", params)
