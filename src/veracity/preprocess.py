"""The one evaluation transform: used for validation while training and for every prediction.

It reproduces timm's eval transform (resize the shorter side to ``input / crop_pct``, centre
crop, scale to [0, 1], normalise) with Pillow and NumPy directly, so serving needs no
torchvision and the parameters come from the checkpoint's metadata, never from code defaults.
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

    def __post_init__(self) -> None:
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
    def min_decode_size(self) -> int:
        """The smallest side a decoded image needs for this transform (see images.load_rgb).

        Square, so it holds whichever way EXIF orientation turns the image.
        """
        return max(self.scale_size)


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
