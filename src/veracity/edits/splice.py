"""Splice: a region of another photograph pasted in, resampled and colour-matched.

The donor patch is cut at a random scale, resized to the region's box and matched in mean
and spread per channel (in Lab or RGB) to a ring of the image around the region, so that
the colour of the paste is not the cue; then it is pasted with a hard edge, a feathered
edge, or Poisson-blended with OpenCV's ``seamlessClone`` (normal or mixed gradients).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from veracity.edits.regions import (
    DEFAULT_AREA,
    Box,
    Edit,
    Image,
    Mask,
    box_around,
    check_image,
    draw_region,
    feather,
    to_bgr,
    write,
)

EDGES = ("hard", "feathered", "poisson")
_RING = 9  # px of surroundings the colours are matched to
_POISSON_PAD = 4  # seamlessClone refuses a mask touching the border of its ROI


def _cut(donor: Image, box: Box, rng: np.random.Generator) -> tuple[Image, float]:
    # The donor is sampled at a scale so its texture size differs from the image's too.
    donor_h, donor_w = donor.shape[:2]
    fit = max(box.height / donor_h, box.width / donor_w)
    scale = float(rng.uniform(max(0.6, fit), max(1.6, fit)))
    cut_h = min(donor_h, max(1, round(box.height / scale)))
    cut_w = min(donor_w, max(1, round(box.width / scale)))
    top = int(rng.integers(0, donor_h - cut_h + 1))
    left = int(rng.integers(0, donor_w - cut_w + 1))
    piece = donor[top : top + cut_h, left : left + cut_w]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(piece, (box.width, box.height), interpolation=interpolation)
    return np.asarray(resized, dtype=np.uint8), scale


def _to_space(pixels: Image, space: str) -> npt.NDArray[np.float32]:
    as_float = pixels.astype(np.float32) / 255.0
    if space == "lab":
        return np.asarray(cv2.cvtColor(as_float, cv2.COLOR_RGB2Lab), dtype=np.float32)
    return as_float


def _from_space(values: npt.NDArray[np.float32], space: str) -> npt.NDArray[np.float64]:
    rgb = cv2.cvtColor(values, cv2.COLOR_Lab2RGB) if space == "lab" else values
    return np.asarray(np.clip(rgb, 0.0, 1.0) * 255.0, dtype=np.float64)


def match_colours(patch: Image, inside: Mask, reference: Image, ring: Mask, space: str) -> Image:
    """``patch`` with the mean and spread per channel of ``reference[ring]`` over ``inside``."""
    source, target = _to_space(patch, space), _to_space(reference, space)
    mean_s, std_s = source[inside].mean(axis=0), source[inside].std(axis=0)
    mean_t, std_t = target[ring].mean(axis=0), target[ring].std(axis=0)
    matched = (source - mean_s) / np.maximum(std_s, 1e-3) * std_t + mean_t
    out = _from_space(np.asarray(matched, dtype=np.float32), space)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _poisson(image: Image, patch: Image, inside: Mask, box: Box, mixed: bool) -> Image:
    pad = _POISSON_PAD
    dst = cv2.copyMakeBorder(to_bgr(image[box.slices]), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    src = cv2.copyMakeBorder(to_bgr(patch), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    mask = np.pad(inside, pad).astype(np.uint8) * 255
    x, y, w, h = cv2.boundingRect(mask)
    flag = cv2.MIXED_CLONE if mixed else cv2.NORMAL_CLONE
    blended = cv2.seamlessClone(src, dst, mask, (x + w // 2, y + h // 2), flag)
    return np.ascontiguousarray(np.asarray(blended, dtype=np.uint8)[pad:-pad, pad:-pad, ::-1])


def splice(
    image: Image,
    donor: Image,
    rng: np.random.Generator,
    *,
    area: tuple[float, float] = DEFAULT_AREA,
    edge: str | None = None,
) -> Edit:
    """A region of ``donor`` pasted into ``image``; ``edge`` one of ``EDGES`` or drawn."""
    check_image(image)
    check_image(donor, "donor")
    if edge is not None and edge not in EDGES:
        raise ValueError(f"edge must be one of {EDGES}, not {edge!r}")
    height, width = image.shape[:2]
    region, params = draw_region(rng, height, width, area, margin=1)
    box = box_around(region)
    outer = box_around(region, _RING)
    patch, scale = _cut(donor, box, rng)
    space = "lab" if rng.random() < 0.5 else "rgb"
    ring = cv2.dilate(region.astype(np.uint8), np.ones((2 * _RING + 1,) * 2, np.uint8)) > 0
    ring &= ~region
    patch = match_colours(patch, region[box.slices], image[outer.slices], ring[outer.slices], space)
    chosen = edge if edge is not None else EDGES[int(rng.integers(len(EDGES)))]
    alpha = None
    if chosen == "feathered":
        width_px = float(rng.uniform(2.0, 8.0))
        alpha = feather(region[box.slices], width_px)
        params["feather_px"] = round(width_px, 2)
    elif chosen == "poisson":
        mixed = bool(rng.random() < 0.3)
        patch = _poisson(image, patch, region[box.slices], box, mixed)
        params["clone"] = "mixed" if mixed else "normal"
    edited = write(image, patch, region, box, alpha)
    params |= {"edge": chosen, "colour_space": space, "donor_scale": round(scale, 3)}
    return Edit(edited, region, "splice", params)
