"""Decoding untrusted image bytes into an upright RGB Pillow image.

Training reads files through the same functions the service uses for uploads, so a model
never meets an image that was oriented or colour-converted differently at serve time.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from veracity.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageFormatError
from veracity.verdicts.quality import estimate_jpeg_quality

# Formats a camera, phone, browser or video-frame grabber produces. Anything else (EPS, PDF,
# PSD, TIFF, ICO, JPEG 2000, ...) widens the decoder attack surface for no benefit.
DEFAULT_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF")

# 40 megapixels covers every phone camera in use; Pillow's own default bomb limit is ~89 MP.
DEFAULT_MAX_PIXELS = 40_000_000

# Transparent pixels are composited onto white, which is what image viewers show; dropping
# the alpha channel instead would expose whatever colour the encoder left under it.
_ALPHA_BACKGROUND = (255, 255, 255)

# Modes Pillow converts to RGB directly and correctly.
_DIRECT_TO_RGB = {"RGB", "L", "1", "CMYK", "YCbCr", "RGBX", "HSV"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def install_warning_policy() -> None:
    """The process-wide policy for Pillow's warnings; entry points call it once at start.

    Pillow reports malformed metadata (corrupt EXIF, oversized tags, invalid APNG chunks) as
    UserWarnings and carries on: those images are usable, so the warnings are noise. The
    decompression-bomb warning is the opposite: an image that large is refused. (pytest's
    configuration in pyproject.toml mirrors this policy.)
    """
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def open_image(
    source: bytes | Path | BinaryIO,
    *,
    formats: Iterable[str] = DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Open an image lazily, checking format and dimensions before any pixel is decoded.

    Args:
        source: Raw bytes, a path, or a binary file object.
        formats: Pillow format names to accept; the format is read from the bytes, never
            from a file name or a declared content type.
        max_pixels: Reject images whose declared width x height exceeds this.

    Returns:
        The opened (not yet decoded) image; only its first frame is used later.

    Raises:
        UnsupportedImageFormatError: a recognised image outside ``formats``.
        ImageTooLargeError: declared dimensions above ``max_pixels``.
        InvalidImageError: anything that is not a readable image.
    """
    allowed = tuple(formats)
    stream: BinaryIO | Path = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        image = Image.open(stream, formats=allowed)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # a local file problem, not a property of the image
    except UnidentifiedImageError as e:
        detected = _detect_format(source)
        if detected is not None and detected not in allowed:
            raise UnsupportedImageFormatError(
                f"image format {detected} is not accepted; send one of: {', '.join(allowed)}"
            ) from e
        raise InvalidImageError(f"not a readable image; send one of: {', '.join(allowed)}") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # The warning arrives as an exception where warnings are errors (the service sets
        # that policy for it); otherwise the explicit pixel check below rejects the image.
        raise ImageTooLargeError(
            f"image dimensions exceed the limit of {max_pixels:,} pixels; downscale it first"
        ) from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise InvalidImageError("the image header is corrupt or truncated") from e
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImageError("the image has zero width or height")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} ({width * height:,} pixels), above the limit of "
            f"{max_pixels:,}; downscale it first"
        )
    return image


def _detect_format(source: bytes | Path | BinaryIO) -> str | None:
    """Name the format of bytes Pillow recognises, for an actionable rejection message."""
    stream: BinaryIO | Path = io.BytesIO(source) if isinstance(source, bytes) else source
    if not isinstance(stream, Path):
        stream.seek(0)
    try:
        with Image.open(stream) as probe:
            return probe.format
    except Exception:
        return None


def decode_rgb(image: Image.Image) -> Image.Image:
    """Decode the first frame, apply EXIF orientation and convert any mode to 8-bit RGB.

    Raises:
        InvalidImageError: the pixel data is corrupt or truncated, or the mode cannot be
            represented as RGB.
    """
    try:
        image.seek(0)
        image.load()
        upright = _apply_exif_orientation(image)
        return to_rgb(upright)
    except InvalidImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise InvalidImageError("the image data is corrupt or truncated") from e


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # upright 8-bit RGB (a JPEG may be decoded at a reduced scale)
    format: str
    jpeg_quality: int | None  # estimated from the file's quantisation table (JPEG only)
    size: tuple[int, int]  # the file's own (width, height), whatever the decode scale


def load_image(
    source: bytes | Path | BinaryIO,
    *,
    formats: Iterable[str] = DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int | None = None,
) -> DecodedImage:
    """``load_rgb``, keeping what the file says about itself (format, JPEG quality)."""
    image = open_image(source, formats=formats, max_pixels=max_pixels)
    try:
        file_format = str(image.format)
        quality = estimate_jpeg_quality(image) if file_format == "JPEG" else None
        size = image.size
        if min_size is not None and file_format == "JPEG":
            image.draft(None, (min_size, min_size))
        return DecodedImage(decode_rgb(image), file_format, quality, size)
    finally:
        image.close()


def load_rgb(
    source: bytes | Path | BinaryIO,
    *,
    formats: Iterable[str] = DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int | None = None,
) -> Image.Image:
    """``open_image`` then ``decode_rgb``: untrusted bytes or a file to an upright RGB image.

    Args:
        min_size: If given, a JPEG may be decoded at a reduced scale (1/2, 1/4 or 1/8, in
            the DCT domain) as long as both sides stay >= ``min_size``. The eval transform
            downsamples to its scale size anyway; decoding a 12-megapixel photo this way is
            about six times faster. Other formats are decoded at full size.
    """
    return load_image(source, formats=formats, max_pixels=max_pixels, min_size=min_size).image


def reencode_jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` as a platform that recompresses uploads would return it: encoded as a
    JPEG of ``quality`` and decoded again (training augmentation, calibration and the
    robustness self-check all use this one definition)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError, UserWarning):
        # Malformed EXIF must not make an otherwise valid image unusable: keep it as stored.
        # (Pillow reports corrupt EXIF as a UserWarning, an exception where warnings are
        # errors; warnings.catch_warnings is not thread-safe, so it is not used here.)
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert every Pillow mode to 8-bit RGB with the meaning of its values preserved.

    Raises:
        InvalidImageError: a mode with no sensible RGB rendering (e.g. LAB).
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _DIRECT_TO_RGB:
        return image.convert("RGB")
    if mode == "P":
        if "transparency" in image.info:
            return _composite(image.convert("RGBA"))
        return image.convert("RGB")
    if mode in _ALPHA_MODES:
        return _composite(image.convert("RGBA"))
    if mode in _SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips 16-bit values at 255, turning most of the image white;
        # rescale the full 16-bit range to 8 bits instead.
        values = np.asarray(image, dtype=np.float32) / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        # Float images carry no standard range; take values as 0-255 like Pillow does.
        values = np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255)
        return Image.fromarray(values.astype(np.uint8), mode="L").convert("RGB")
    raise InvalidImageError(
        f"images in colour mode {mode} are not supported; send RGB or greyscale"
    )


def _composite(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, _ALPHA_BACKGROUND)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
