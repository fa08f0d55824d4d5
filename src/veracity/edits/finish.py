"""The last processing every training image goes through, real or fake alike: a resize,
sometimes a light blur, and an encoding as JPEG (quality 30-100) or WebP.

Wang et al. (CNNDetection, CVPR 2020) showed that a detector trained on images whose
classes were processed differently learns the processing; so the parameters are drawn
first (``draw_finish``, from the image size and the generator only) and applied to any
image (``apply_finish``): a real image and the fake made from it, given the same draw,
go through the same steps. After ``finish`` the pixels outside an edit's mask are no
longer the original's (the resize, blur and encoding touch every pixel): the mask,
resized with the image (nearest neighbour), marks where the edit was, not what changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from veracity.edits.regions import MIN_SIDE, Image, Mask, check_image, to_bgr

FORMATS = ("jpeg", "webp")


@dataclass(frozen=True)
class FinishOptions:
    """What ``draw_finish`` draws from; the defaults are the training pipeline's."""

    resize_probability: float = 0.5
    scale: tuple[float, float] = (0.5, 1.0)
    blur_probability: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    webp_probability: float = 0.25
    quality: tuple[int, int] = (30, 100)


@dataclass(frozen=True)
class FinishParams:
    """One draw: the size to resize to, the blur (0 for none), the format and quality."""

    width: int
    height: int
    blur_sigma: float
    format: str
    quality: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


@dataclass(frozen=True)
class Finished:
    image: Image
    mask: Mask | None
    params: FinishParams


def draw_finish(
    rng: np.random.Generator, height: int, width: int, options: FinishOptions = FinishOptions()
) -> FinishParams:
    """The parameters of one finish for an image of this size."""
    scale = 1.0
    if rng.random() < options.resize_probability:
        # Never below the edits' minimum side, so a finished image can be edited again.
        floor = min(1.0, MIN_SIDE / min(height, width))
        scale = max(floor, float(rng.uniform(*options.scale)))
    sigma = 0.0
    if rng.random() < options.blur_probability:
        sigma = round(float(rng.uniform(*options.blur_sigma)), 3)
    kind = "webp" if rng.random() < options.webp_probability else "jpeg"
    quality = int(rng.integers(options.quality[0], options.quality[1] + 1))
    return FinishParams(
        width=max(1, round(width * scale)),
        height=max(1, round(height * scale)),
        blur_sigma=sigma,
        format=kind,
        quality=quality,
    )


def apply_finish(image: Image, params: FinishParams, mask: Mask | None = None) -> Finished:
    """``image`` (and ``mask``, nearest neighbour) put through ``params``."""
    check_image(image)
    if mask is not None and mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    size = (params.width, params.height)
    out = np.ascontiguousarray(image)
    if size != (image.shape[1], image.shape[0]):
        out = np.asarray(cv2.resize(out, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        if mask is not None:
            resized = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
            mask = np.asarray(resized, dtype=bool)
    if params.blur_sigma > 0:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), params.blur_sigma), dtype=np.uint8)
    flag = cv2.IMWRITE_WEBP_QUALITY if params.format == "webp" else cv2.IMWRITE_JPEG_QUALITY
    ok, encoded = cv2.imencode(
        ".webp" if params.format == "webp" else ".jpg", to_bgr(out), [flag, params.quality]
    )
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the image as {params.format}")
    decoded = np.asarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR), dtype=np.uint8)
    return Finished(np.ascontiguousarray(decoded[..., ::-1]), mask, params)


def finish(
    image: Image,
    rng: np.random.Generator,
    mask: Mask | None = None,
    options: FinishOptions = FinishOptions(),
) -> Finished:
    """``draw_finish`` then ``apply_finish``: the same generator state gives the same steps."""
    check_image(image)
    params = draw_finish(rng, image.shape[0], image.shape[1], options)
    return apply_finish(image, params, mask)
