"""The one evaluation transform: used for validation while training and for every prediction.

Two modes, chosen by the checkpoint's metadata:

- ``resize`` (format-1 checkpoints): timm's eval transform (resize the shorter side to
  ``input / crop_pct``, centre crop, scale to [0, 1], normalise), reproduced with Pillow and
  NumPy so serving needs no torchvision.
- ``patches``: a grid of ``patch_grid`` x ``patch_grid`` crops of the input size taken at the
  image's native resolution, never resampled. Manipulation traces (sensor noise, generator
  checkerboards, JPEG block grids) live at the pixel level; shrinking a 12-megapixel photo
  to 109 px erases them and makes the verdict depend on the upload's size, which resizing
  did measurably. Patch corners sit on the 16-pixel grid of the image's origin, so every
  patch sees JPEG's 8x8 blocks (and 4:2:0 chroma's 16x16 MCUs) at the same phase as
  training did. The model scores each patch; the predictor pools their logits.
  With ``max_side`` set, an image whose longer side exceeds it is first shrunk (box
  filter, as the training corpus's working size is) so that the grid's patches tile the
  whole image: every pixel is in some patch, and the explanation's cells are read whole.

Either way the parameters come from the checkpoint's metadata, never from code defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from veracity.errors import ConfigurationError

Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
CropMode = Literal["center", "squash"]
PreprocessMode = Literal["resize", "patches"]
# How an image's patch logits become the image's: their mean, the mean of the more
# suspicious half (the patches with the highest fake-minus-real score), or the most
# suspicious patch's.
PatchPooling = Literal["mean", "top_half", "max"]
POOLINGS: tuple[str, ...] = ("mean", "top_half", "max")

# Patch corners are multiples of this (JPEG 4:2:0 MCU size).
PATCH_ALIGN = 16

_RESAMPLE: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that defines the eval transform; stored in every checkpoint's metadata."""

    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Interpolation = "bicubic"
    crop_pct: float = 0.875
    crop_mode: CropMode = "center"
    mode: PreprocessMode = "resize"
    patch_grid: int = 1  # patches mode: patch_grid x patch_grid patches per image
    patch_pooling: PatchPooling = "mean"
    # Trained on face crops: faces are detected and each crop (the box plus face_margin of
    # its size on every side) is what the model reads (veracity.faces).
    face_crop: bool = False
    face_margin: float = 1 / 3
    # Patches mode: a longer side above this is shrunk to it first (None: never shrunk).
    max_side: int | None = None

    def __post_init__(self) -> None:
        if self.patch_pooling not in POOLINGS:
            raise ConfigurationError(
                f"patch_pooling must be one of {', '.join(POOLINGS)}, got {self.patch_pooling!r}"
            )
        if self.max_side is not None and self.max_side < max(self.input_size[1:]):
            raise ConfigurationError(
                f"max_side must be at least the patch size, got {self.max_side}"
            )
        if self.mode not in ("resize", "patches"):
            raise ConfigurationError(f"mode must be 'resize' or 'patches', got {self.mode!r}")
        if not 0.0 <= self.face_margin <= 1.0:
            raise ConfigurationError(f"face_margin must be in [0, 1], got {self.face_margin}")
        if not 1 <= self.patch_grid <= 8:
            raise ConfigurationError(f"patch_grid must be in [1, 8], got {self.patch_grid}")
        channels, height, width = self.input_size
        if channels != 3 or height <= 0 or width <= 0:
            raise ConfigurationError(f"input_size must be (3, H, W), got {self.input_size}")
        if self.interpolation not in _RESAMPLE:
            raise ConfigurationError(
                f"interpolation {self.interpolation!r} is not one of {sorted(_RESAMPLE)}"
            )
        if not 0.0 < self.crop_pct <= 1.0:
            raise ConfigurationError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.crop_mode not in ("center", "squash"):
            raise ConfigurationError(
                f"crop_mode must be 'center' or 'squash', got {self.crop_mode!r}"
            )
        if any(s <= 0 for s in self.std):
            raise ConfigurationError(f"std values must be positive, got {self.std}")

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the tensor the model receives."""
        return self.input_size[1], self.input_size[2]

    @property
    def scale_size(self) -> tuple[int, int]:
        """(height, width) the image is resized towards before the centre crop (as timm)."""
        height, width = self.image_size
        return math.floor(height / self.crop_pct), math.floor(width / self.crop_pct)

    @property
    def min_decode_size(self) -> int | None:
        """The smallest side a decoded image needs for this transform (see images.load_rgb).

        Square, so it holds whichever way EXIF orientation turns the image. ``None`` in
        patches mode: patches are taken at native resolution, so JPEGs are decoded in full.
        """
        if self.mode == "patches" or self.face_crop:
            return None  # patches and face detection need the full resolution
        return max(self.scale_size)

    @property
    def patches_per_image(self) -> int:
        return self.patch_grid * self.patch_grid if self.mode == "patches" else 1

    @property
    def min_side(self) -> int:
        """The shorter side below which the model has too few pixels to judge (gates.py).

        Patches mode: two patch widths, so the grid's patches are not one patch repeated.
        Resize mode: the model's input size (smaller images are upsampled).
        """
        side = max(self.image_size)
        return 2 * side if self.mode == "patches" else side


class EvalTransform:
    """Upright RGB image -> normalised float32 CHW tensor, exactly as the model was validated."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self._resample = _RESAMPLE[config.interpolation]
        # (x / 255 - mean) / std folded into one multiply-add per value.
        std = np.asarray(config.std, dtype=np.float32)
        mean = np.asarray(config.mean, dtype=np.float32)
        self._scale = (1.0 / (255.0 * std)).reshape(3, 1, 1)
        self._shift = (mean / std).reshape(3, 1, 1)

    def resize(self, image: Image.Image) -> Image.Image:
        """Resize towards ``scale_size`` (before any crop), as timm's eval transform does."""
        scale_h, scale_w = self.config.scale_size
        width, height = image.size
        if self.config.crop_mode == "squash":
            target = (scale_w, scale_h)
        elif scale_h == scale_w:
            # Shorter side to the scale size, aspect preserved (torchvision Resize(int) rules).
            short, long = (width, height) if width <= height else (height, width)
            new_long = int(scale_h * long / short)
            target = (scale_h, new_long) if width <= height else (new_long, scale_h)
        else:
            ratio = min(scale_h / height, scale_w / width)
            target = (round(width * ratio), round(height * ratio))
        if target != (width, height):
            image = image.resize(target, self._resample)
        width, height = image.size
        out_h, out_w = self.config.image_size
        if height < out_h or width < out_w:
            raise ConfigurationError(
                f"resized image {width}x{height} is smaller than the input {out_w}x{out_h}"
            )
        return image

    def resize_and_crop(self, image: Image.Image) -> Image.Image:
        """The geometric half of the transform: resize, then centre crop to the input size."""
        resized = self.resize(image)
        width, height = resized.size
        out_h, out_w = self.config.image_size
        # torchvision CenterCrop rounding, so crops match timm's pixel for pixel.
        top = round((height - out_h) / 2.0)
        left = round((width - out_w) / 2.0)
        return resized.crop((left, top, left + out_w, top + out_h))

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """The photometric half: 8-bit RGB -> normalised float32 (3, H, W)."""
        pixels = np.asarray(image, dtype=np.uint8)
        chw = pixels.transpose(2, 0, 1).astype(np.float32)
        chw *= self._scale
        chw -= self._shift
        return torch.from_numpy(chw)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Transform an upright RGB image (see ``veracity.images.decode_rgb``)."""
        if image.mode != "RGB":
            raise ConfigurationError(f"EvalTransform expects an RGB image, got mode {image.mode}")
        return self.to_tensor(self.resize_and_crop(image))


def patch_origins(length: int, patch: int, count: int) -> list[int]:
    """``count`` patch starts spread evenly over ``length``, snapped down to PATCH_ALIGN."""
    if count == 1 or length <= patch:
        span = max(0, length - patch)
        return [span // 2 // PATCH_ALIGN * PATCH_ALIGN] * count
    last = (length - patch) // PATCH_ALIGN * PATCH_ALIGN
    return [round(i * last / (count - 1)) // PATCH_ALIGN * PATCH_ALIGN for i in range(count)]


class PatchTransform:
    """Upright RGB image -> (patches, 3, h, w): native-resolution patches on a fixed grid.

    An image smaller than one patch is upsampled to fit (the quality gates call it
    ``low_resolution``, so that verdict is never confident).
    """

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self.pixels = EvalTransform(config)

    def fit(self, image: Image.Image) -> Image.Image:
        out_h, out_w = self.config.image_size
        width, height = image.size
        limit = self.config.max_side
        if limit is not None and max(width, height) > limit:
            ratio = limit / max(width, height)
            size = (max(out_w, round(width * ratio)), max(out_h, round(height * ratio)))
            return image.resize(size, Image.Resampling.BOX)
        if width >= out_w and height >= out_h:
            return image
        ratio = max(out_w / width, out_h / height)
        size = (max(out_w, math.ceil(width * ratio)), max(out_h, math.ceil(height * ratio)))
        return image.resize(size, _RESAMPLE[self.config.interpolation])

    def crops(self, image: Image.Image) -> list[Image.Image]:
        image = self.fit(image)
        out_h, out_w = self.config.image_size
        grid = self.config.patch_grid
        tops = patch_origins(image.height, out_h, grid)
        lefts = patch_origins(image.width, out_w, grid)
        return [image.crop((x, y, x + out_w, y + out_h)) for y in tops for x in lefts]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            raise ConfigurationError(f"PatchTransform expects an RGB image, got mode {image.mode}")
        return torch.stack([self.pixels.to_tensor(crop) for crop in self.crops(image)])


def pool_patch_logits(
    logits: torch.Tensor, patches: int, pooling: PatchPooling, fake_index: int = 1
) -> torch.Tensor:
    """(N * patches, C) patch logits -> (N, C) image logits.

    ``top_half`` averages the half of an image's patches that look most manipulated (the
    highest ``logit[fake] - logit[real]``). Manipulation is usually local: a face, an
    object, a region. Averaging every patch dilutes the evidence of a small region with
    the untouched rest, and the larger the image the more it dilutes; the demo model's
    verdicts at 512 px went from 89% to 97% correct by pooling this way (measured on
    unseen sample data, the same patches). The calibration map absorbs the shift this
    pooling gives real images. ``max`` keeps only the most suspicious patch: where the
    patches tile the image (``max_side``), an edit of a few percent of it fills one or two
    patches, and even half of them would dilute it.
    """
    per_patch = logits.view(-1, patches, logits.shape[-1])
    if pooling == "mean" or patches == 1:
        return per_patch.mean(dim=1)
    real_index = 1 - fake_index
    suspicion = per_patch[..., fake_index] - per_patch[..., real_index]
    keep = (patches + 1) // 2 if pooling == "top_half" else 1
    top = suspicion.topk(keep, dim=1).indices  # (N, keep)
    chosen = per_patch.gather(1, top.unsqueeze(-1).expand(-1, -1, per_patch.shape[-1]))
    return chosen.mean(dim=1)


class ImageTransform:
    """The transform a checkpoint asks for, as (patches, 3, H, W) for every mode.

    Resize mode yields one "patch": the centre crop of the resized image.
    """

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self._patches = PatchTransform(config) if config.mode == "patches" else None
        self._resize = EvalTransform(config)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self._patches is not None:
            return self._patches(image)
        return self._resize(image).unsqueeze(0)
