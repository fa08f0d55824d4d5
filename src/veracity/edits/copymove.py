"""Copy-move: a region of the same image, turned and scaled, pasted elsewhere in it."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from veracity.edits.regions import (
    DEFAULT_AREA,
    Box,
    Edit,
    Image,
    Mask,
    Params,
    box_around,
    check_image,
    draw_region,
    feather,
    write,
)

_REGIONS = 10
_SOURCES = 60


def _source_matrix(
    centre: tuple[float, float], target: tuple[float, float], angle: float, scale: float, box: Box
) -> npt.NDArray[np.float64]:
    # Maps source pixels onto the box's pixels: turn and scale about the source centre,
    # then move that centre onto the target's.
    matrix = np.asarray(cv2.getRotationMatrix2D(centre, angle, scale), dtype=np.float64)
    matrix[:, 2] += (target[0] - centre[0] - box.left, target[1] - centre[1] - box.top)
    return matrix


def _footprint_inside(matrix: npt.NDArray[np.float64], box: Box, height: int, width: int) -> bool:
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array(
        [[0, 0, 1], [box.width, 0, 1], [0, box.height, 1], [box.width, box.height, 1]]
    )
    mapped = corners @ np.asarray(inverse, dtype=np.float64).T
    return bool(
        (mapped[:, 0] >= 0).all()
        and (mapped[:, 0] <= width - 1).all()
        and (mapped[:, 1] >= 0).all()
        and (mapped[:, 1] <= height - 1).all()
    )


def _place(
    image: Image, rng: np.random.Generator, area: tuple[float, float]
) -> tuple[Mask, Box, npt.NDArray[np.float64], Params]:
    height, width = image.shape[:2]
    for _ in range(_REGIONS):
        region, params = draw_region(rng, height, width, area, margin=1)
        box = box_around(region)
        rows, cols = np.nonzero(region)
        target = (float(cols.mean()), float(rows.mean()))
        # The copy comes from at least one region radius away, so it shows other content.
        distance = math.sqrt(region.sum() / math.pi)
        angle = float(rng.uniform(-45.0, 45.0))
        scale = float(rng.uniform(0.75, 1.33))
        for _ in range(_SOURCES):
            centre = (float(rng.uniform(0, width - 1)), float(rng.uniform(0, height - 1)))
            if math.dist(centre, target) < distance:
                continue
            matrix = _source_matrix(centre, target, angle, scale, box)
            if _footprint_inside(matrix, box, height, width):
                params |= {
                    "angle": round(angle, 2),
                    "scale": round(scale, 3),
                    "source_x": round(centre[0], 1),
                    "source_y": round(centre[1], 1),
                }
                return region, box, matrix, params
    raise ValueError(f"no copy-move source fits a {width}x{height} image")


def copy_move(
    image: Image, rng: np.random.Generator, *, area: tuple[float, float] = DEFAULT_AREA
) -> Edit:
    """A region of ``image`` turned by up to 45 degrees, scaled 0.75-1.33x, pasted elsewhere."""
    check_image(image)
    region, box, matrix, params = _place(image, rng, area)
    patch = cv2.warpAffine(
        image,
        matrix,
        (box.width, box.height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    alpha = None
    if rng.random() < 0.5:
        width_px = float(rng.uniform(1.5, 5.0))
        alpha = feather(region[box.slices], width_px)
        params["feather_px"] = round(width_px, 2)
    edited = write(image, np.asarray(patch, dtype=np.uint8), region, box, alpha)
    return Edit(edited, region, "copy_move", params)
