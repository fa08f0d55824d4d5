"""Self-blended faces, after Shiohara and Yamasaki, "Detecting Deepfakes with Self-Blended
Images" (CVPR 2022), reimplemented from the paper's description (the authors' code is
licensed for non-commercial use only and was not read).

The recipe: a copy of the image is perturbed in colour (RGB shift, hue/saturation/value,
brightness and contrast), sometimes in frequency (down-and-up sampling or sharpening) and
in geometry (a small scale and shift about the face); a mask is made from the landmarks'
convex hull, deformed, softened by two Gaussian blurs and scaled by a blend ratio; the
perturbed copy is blended over the face through it. What a detector learns is the seam
and the small mismatch, the traces every face swap leaves.

One departure, on purpose: the paper perturbs either the source or the target copy; here
the target is always the untouched image, so that the pixels outside the mask are the
original's and the mask is exact (see ``regions``). The face, not ``area``, sets how much
of the image is edited: its share is recorded as ``area_fraction``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from veracity.edits.regions import Box, Edit, Image, Mask, Params, box_around, check_image, write

_BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
_DENSE = 9  # from this many landmarks on, their hull outlines the face (68-point sets)
_MIN_FACE_PIXELS = 256
Floats = npt.NDArray[np.float64]


def _sparse_hull(points: Floats, canvas: npt.NDArray[np.uint8]) -> None:
    # Eyes, nose and mouth corners outline the middle of the face only: their hull is grown
    # by an ellipse scaled to the eye distance and cut to the face box those points imply.
    eyes = float(np.linalg.norm(points[1] - points[0])) or 1.0
    cv2.fillConvexPoly(canvas, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    size = (max(3, round(1.1 * eyes)) | 1, max(3, round(1.5 * eyes)) | 1)
    grown = cv2.dilate(canvas, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, size))
    low = points.min(axis=0) - np.array([0.45 * eyes, 0.6 * eyes])
    high = points.max(axis=0) + np.array([0.45 * eyes, 0.75 * eyes])
    face = np.zeros_like(canvas)
    cv2.rectangle(
        face, tuple(int(v) for v in np.round(low)), tuple(int(v) for v in np.round(high)), 1, -1
    )
    canvas[:] = np.asarray(grown, dtype=np.uint8) & face


def face_hull(landmarks: npt.ArrayLike, height: int, width: int) -> Mask:
    """The face's region from its landmarks: the hull of a dense set (68 points), or of
    five points (eyes, nose tip, mouth corners, as CenterFace gives them) grown to the face
    box they imply. Raises ValueError for fewer than 5 points or points off the image."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 5:
        raise ValueError(f"landmarks must be N x 2 with N >= 5, got shape {points.shape}")
    if (points < 0).any() or (points[:, 0] > width - 1).any() or (points[:, 1] > height - 1).any():
        raise ValueError("landmarks must lie inside the image")
    canvas = np.zeros((height, width), np.uint8)
    if points.shape[0] >= _DENSE:
        cv2.fillConvexPoly(canvas, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    else:
        _sparse_hull(points, canvas)
    return canvas.astype(bool)


def _deformed_alpha(hull: Mask, box: Box, rng: np.random.Generator, params: Params) -> Floats:
    crop = hull[box.slices].astype(np.float32)
    size = math.sqrt(float(hull.sum()))
    # A smooth random displacement field bends the outline, so the seam is not a hull.
    coarse = rng.normal(0.0, 0.04 * size, size=(2, 4, 4)).astype(np.float32)
    dx, dy = (cv2.resize(c, (box.width, box.height), interpolation=cv2.INTER_CUBIC) for c in coarse)
    grid_y, grid_x = np.mgrid[0 : box.height, 0 : box.width].astype(np.float32)
    bent = cv2.remap(crop, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR, borderValue=0.0)
    first, second = (
        max(3, int(rng.integers(3, 1 + max(4, round(size / 6))))) | 1 for _ in range(2)
    )
    # The first blur, cut below 1, shrinks the mask; the second softens its edge.
    shrunk = cv2.GaussianBlur(bent, (first, first), 0)
    shrunk[shrunk < 1.0 - 1e-6] = 0.0
    soft = cv2.GaussianBlur(shrunk, (second, second), 0)
    ratio = float(_BLEND_RATIOS[int(rng.integers(len(_BLEND_RATIOS)))])
    params |= {"blur_1": first, "blur_2": second, "blend_ratio": ratio}
    alpha = np.asarray(soft, dtype=np.float64) * ratio
    alpha[alpha < 1.0 / 64.0] = 0.0  # a tail that would round back to the original
    return alpha


def _colour(crop: Floats, rng: np.random.Generator, params: Params) -> Floats:
    out = crop + rng.uniform(-20.0, 20.0, size=3)
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hue, sat, val = rng.uniform(-10.0, 10.0), rng.uniform(-0.15, 0.15), rng.uniform(-0.1, 0.1)
    hsv[..., 0] = (hsv[..., 0] + hue) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] + sat, 0.0, 1.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + val, 0.0, 1.0)
    out = np.asarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), dtype=np.float64) * 255.0
    contrast, brightness = rng.uniform(0.9, 1.1), rng.uniform(-0.1, 0.1) * 255.0
    params |= {"hue": round(hue, 2), "saturation": round(sat, 3), "value": round(val, 3)}
    params |= {"contrast": round(contrast, 3), "brightness": round(brightness, 2)}
    return np.asarray((out - out.mean()) * contrast + out.mean() + brightness, dtype=np.float64)


def _frequency(crop: Floats, rng: np.random.Generator, params: Params) -> Floats:
    choice = int(rng.integers(3))
    if choice == 0:
        params["frequency"] = "none"
        return crop
    height, width = crop.shape[:2]
    if choice == 1:
        factor = float(rng.uniform(1.5, 3.0))
        small = cv2.resize(crop, (max(1, round(width / factor)), max(1, round(height / factor))))
        params |= {"frequency": "resample", "resample_factor": round(factor, 3)}
        return np.asarray(cv2.resize(small, (width, height)), dtype=np.float64)
    amount = float(rng.uniform(0.3, 1.0))
    blurred = cv2.GaussianBlur(crop, (0, 0), 1.0)
    params |= {"frequency": "sharpen", "sharpen": round(amount, 3)}
    return np.asarray(crop + amount * (crop - blurred), dtype=np.float64)


def _geometry(crop: Floats, rng: np.random.Generator, face: float, params: Params) -> Floats:
    height, width = crop.shape[:2]
    scale_x, scale_y = rng.uniform(0.95, 1.05, size=2)
    shift_x, shift_y = rng.uniform(-0.03, 0.03, size=2) * face
    centre_x, centre_y = width / 2.0, height / 2.0
    matrix = np.array(
        [
            [scale_x, 0.0, centre_x * (1 - scale_x) + shift_x],
            [0.0, scale_y, centre_y * (1 - scale_y) + shift_y],
        ]
    )
    params |= {"scale_x": round(float(scale_x), 4), "scale_y": round(float(scale_y), 4)}
    params |= {"shift_x": round(float(shift_x), 2), "shift_y": round(float(shift_y), 2)}
    warped = cv2.warpAffine(crop, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    return np.asarray(warped, dtype=np.float64)


def self_blend(image: Image, landmarks: npt.ArrayLike, rng: np.random.Generator) -> Edit:
    """The face blended with a perturbed copy of itself through a softened landmark mask."""
    check_image(image)
    height, width = image.shape[:2]
    hull = face_hull(landmarks, height, width)
    if hull.sum() < _MIN_FACE_PIXELS:
        raise ValueError(f"the face covers under {_MIN_FACE_PIXELS} px; too small to blend")
    face = math.sqrt(float(hull.sum()))
    # The box reaches past the hull by more than the bend, the shift and the scale move it.
    box = box_around(hull, int(0.15 * face) + 4)
    params: Params = {"landmarks": int(np.asarray(landmarks).shape[0])}
    alpha = _deformed_alpha(hull, box, rng, params)
    source = image[box.slices].astype(np.float64)
    source = _geometry(_frequency(_colour(source, rng, params), rng, params), rng, face, params)
    region = np.zeros((height, width), bool)
    region[box.slices] = alpha > 0
    if not region.any():
        raise ValueError("the face mask vanished when softened; the face is too small")
    edited = write(image, np.clip(source, 0, 255), region, box, alpha)
    params["area_fraction"] = round(float(region.mean()), 5)
    return Edit(edited, region, "self_blend", params)
