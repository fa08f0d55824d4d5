"""The robustness self-check's variants: what a platform commonly does to an upload.

Re-encoding as JPEG at quality 75 and halving the size are the two most common things
social platforms and messengers do to media; a verdict that flips under either rests on
traces that the next re-share would erase.
"""

from __future__ import annotations

from PIL import Image

from veracity.images import reencode_jpeg

VARIANTS = ("jpeg75", "half_size")


def jpeg75(image: Image.Image) -> Image.Image:
    return reencode_jpeg(image, 75)


def half_size(image: Image.Image) -> Image.Image:
    size = (max(1, image.width // 2), max(1, image.height // 2))
    return image.resize(size, Image.Resampling.LANCZOS)


def variants(image: Image.Image, *, min_side: int) -> dict[str, Image.Image]:
    """The variants of ``image`` to re-score; halving is skipped below ``min_side`` x 2."""
    out = {"jpeg75": jpeg75(image)}
    if min(image.size) // 2 >= min_side:
        out["half_size"] = half_size(image)
    return out
