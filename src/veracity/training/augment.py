"""Training augmentations: timm's pipeline, or one that keeps forensic traces intact.

Manipulation traces (sensor-noise mismatch, upsampling checkerboards, JPEG grids) live in
the highest frequencies. timm's RandomResizedCrop resamples every training image by a
random factor that evaluation never applies, so the network learns statistics it will not
see at serve time (and BatchNorm's running statistics drift away from them). The
``forensic`` mode resamples exactly as evaluation does and varies only the crop position and
mirroring, which leave pixel statistics untouched.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

import torch
from PIL import Image

from veracity.models import create_train_transform
from veracity.preprocess import EvalTransform, PreprocessConfig

AugmentMode = Literal["forensic", "timm"]


class ForensicTrainTransform:
    """Eval-identical resize, then a random crop position and an optional mirror."""

    def __init__(self, config: PreprocessConfig, *, hflip: float) -> None:
        self.eval = EvalTransform(config)
        self.hflip = hflip

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resized = self.eval.resize(image)
        out_h, out_w = self.eval.config.image_size
        # The module-level stream is seeded by the trainer and restored on resume.
        top = random.randint(0, resized.height - out_h)
        left = random.randint(0, resized.width - out_w)
        crop = resized.crop((left, top, left + out_w, top + out_h))
        if random.random() < self.hflip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self.eval.to_tensor(crop)


def create_augmentation(
    mode: AugmentMode,
    config: PreprocessConfig,
    *,
    scale: tuple[float, float],
    hflip: float,
    color_jitter: float,
) -> Callable[[Image.Image], torch.Tensor]:
    """The training transform for ``mode``; ``scale``/``color_jitter`` apply to ``timm``."""
    if mode == "forensic":
        return ForensicTrainTransform(config, hflip=hflip)
    return create_train_transform(config, scale=scale, hflip=hflip, color_jitter=color_jitter)
