"""Training augmentations: timm's pipeline, or ones that keep forensic traces intact.

Manipulation traces (sensor-noise mismatch, upsampling checkerboards, JPEG grids) live in
the highest frequencies. timm's RandomResizedCrop resamples every training image by a
random factor that evaluation never applies, so the network learns statistics it will not
see at serve time (and BatchNorm's running statistics drift away from them). The
``forensic`` mode resamples exactly as evaluation does and varies only the crop position and
mirroring, which leave pixel statistics untouched. For patch checkpoints,
``PatchTrainTransform`` takes several native-resolution patches per image on the same
16-pixel grid as evaluation, and re-encodes some as JPEG at a random quality first, so the
model learns traces that survive a platform's recompression instead of the last encode's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

import torch
from PIL import Image

from veracity.images import reencode_jpeg
from veracity.models import create_train_transform
from veracity.preprocess import PATCH_ALIGN, EvalTransform, PatchTransform, PreprocessConfig

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


# Patches are drawn from one window of at most this many patch widths per side, so the
# optional JPEG re-encode touches a small region rather than a 12-megapixel image.
_WINDOW_PATCHES = 4


def _aligned(limit: int) -> int:
    """A random multiple of PATCH_ALIGN in [0, limit]."""
    return random.randint(0, limit // PATCH_ALIGN) * PATCH_ALIGN


class PatchTrainTransform:
    """``patches`` random native-resolution patches -> (patches, 3, h, w).

    With probability ``jpeg_prob`` the window the patches come from is first re-encoded as
    a JPEG of a quality drawn from ``jpeg_quality``. The window starts on the 16-pixel grid,
    so the new 8x8 blocks fall where a whole-image re-encode would put them.
    """

    def __init__(
        self,
        config: PreprocessConfig,
        *,
        patches: int,
        hflip: float,
        jpeg_prob: float,
        jpeg_quality: tuple[int, int],
    ) -> None:
        self.patches = PatchTransform(config)
        self.count = patches
        self.hflip = hflip
        self.jpeg_prob = jpeg_prob
        self.jpeg_quality = jpeg_quality

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = self.patches.fit(image)
        out_h, out_w = self.patches.config.image_size
        win_w = min(image.width, _WINDOW_PATCHES * out_w)
        win_h = min(image.height, _WINDOW_PATCHES * out_h)
        left, top = _aligned(image.width - win_w), _aligned(image.height - win_h)
        window = image.crop((left, top, left + win_w, top + win_h))
        if random.random() < self.jpeg_prob:
            window = reencode_jpeg(window, random.randint(*self.jpeg_quality))
        crops = []
        for _ in range(self.count):
            x, y = _aligned(win_w - out_w), _aligned(win_h - out_h)
            crop = window.crop((x, y, x + out_w, y + out_h))
            if random.random() < self.hflip:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crops.append(self.patches.pixels.to_tensor(crop))
        return torch.stack(crops)


def create_augmentation(
    mode: AugmentMode,
    config: PreprocessConfig,
    *,
    scale: tuple[float, float],
    hflip: float,
    color_jitter: float,
    patches: int = 4,
    jpeg_prob: float = 0.0,
    jpeg_quality: tuple[int, int] = (60, 95),
) -> Callable[[Image.Image], torch.Tensor]:
    """The training transform for ``mode`` and ``config``.

    Patch checkpoints always train on patches (``patches``, ``jpeg_prob``, ``jpeg_quality``
    apply); for resize checkpoints ``scale``/``color_jitter`` apply to ``timm`` mode.
    """
    if config.mode == "patches":
        return PatchTrainTransform(
            config,
            patches=patches,
            hflip=hflip,
            jpeg_prob=jpeg_prob,
            jpeg_quality=jpeg_quality,
        )
    if mode == "forensic":
        return ForensicTrainTransform(config, hflip=hflip)
    return create_train_transform(config, scale=scale, hflip=hflip, color_jitter=color_jitter)
