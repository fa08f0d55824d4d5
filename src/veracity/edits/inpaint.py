"""Object removal: a region filled in from its surroundings by OpenCV's inpainting
(Telea's fast marching method or the Navier-Stokes method)."""

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

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def inpaint(
    image: Image,
    rng: np.random.Generator,
    *,
    area: tuple[float, float] = DEFAULT_AREA,
    method: str | None = None,
) -> Edit:
    """A region removed and filled in; ``method`` ``"telea"`` or ``"ns"``, or drawn."""
    check_image(image)
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, not {method!r}")
    region, params = draw_region(rng, image.shape[0], image.shape[1], area)
    chosen = method if method is not None else list(METHODS)[int(rng.integers(len(METHODS)))]
    radius = int(rng.integers(3, 10))
    # Both methods read only known pixels within the radius of the hole's edge, so the box
    # grown by twice that gives the result the whole image would.
    box = box_around(region, 2 * radius + 2)
    hole = region[box.slices].astype(np.uint8) * 255
    filled = cv2.inpaint(to_bgr(image[box.slices]), hole, radius, METHODS[chosen])
    patch = np.asarray(filled, dtype=np.uint8)[..., ::-1]
    edited = write(image, patch, region, box)
    params |= {"method": chosen, "radius": radius}
    return Edit(edited, region, "inpaint", params)
