"""Decoding untrusted image bytes into an upright RGB Pillow image.

Training reads files through the same functions the service uses for uploads, so a model
never meets an image that was oriented or colour-converted differently at serve time.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from veracity.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageFormatError
from veracity.verdicts.quality import estimate_jpeg_quality

# Formats a camera, phone, browser or video-frame grabber produces. Anything else (EPS, PDF,
# PSD, TIFF, ICO, JPEG 2000, ...) widens the decoder attack surface for no benefit.
DEFAULT_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF")

# 40 megapixels covers every phone camera in use; Pillow's own default bomb limit is ~89 MP.
DEFAULT_MAX_PIXELS = 40_000_000

# libjpeg decodes every scan of a progressive JPEG over the whole image, so the scans, not
# the file's size, bound the work: 15,000 copies of one tiny scan in 1.4 MB held a decode
# thread for 37 s. Encoders write about 10 (libjpeg's progression for colour, 18 for CMYK;
# mozjpeg's optimised scripts about as many); libjpeg-turbo's answer to the same attack is a
# scan limit (djpeg -maxscans, TJPARAM_SCANLIMIT).
DEFAULT_MAX_JPEG_SCANS = 100

# What decoding one upload may hold at once (see estimate_decode_bytes): a 40-megapixel
# image of any accepted format and mode fits, with a progressive JPEG's coefficients.
DEFAULT_MAX_DECODE_BYTES = 320 * 2**20

# Reduced images are converted to RGB a strip of about this many pixels at a time, so that
# a conversion's copies (an alpha composite, a 16-bit rescale) never span the whole image.
_STRIP_PIXELS = 2**22

# Transparent pixels are composited onto white, which is what image viewers show; dropping
# the alpha channel instead would expose whatever colour the encoder left under it.
_ALPHA_BACKGROUND = (255, 255, 255)

# Modes Pillow converts to RGB directly and correctly.
_DIRECT_TO_RGB = {"RGB", "L", "1", "CMYK", "YCbCr", "RGBX", "HSV"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}

# Bytes a pixel takes in Pillow's storage (every other mode: 4, even 8-bit RGB), and what
# converting one to RGB holds besides the RGB result (to_rgb's intermediate copies).
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_CONVERSION_BYTES = {"P": 4, "LA": 4, "PA": 4, "La": 4, "RGBa": 4, "I": 10, "F": 10}
_CONVERSION_BYTES |= dict.fromkeys(("I;16", "I;16B", "I;16L", "I;16N"), 10)

# EXIF orientation -> the transpose that undoes it (what ImageOps.exif_transpose applies).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class DecodeBudget:
    """What decoding one upload may cost beyond its declared pixel count (the settings')."""

    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS
    max_bytes: int = DEFAULT_MAX_DECODE_BYTES


DEFAULT_DECODE_BUDGET = DecodeBudget()


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
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS,
) -> Image.Image:
    """Open an image lazily, checking format, dimensions and (JPEG) scans before any pixel
    is decoded.

    Args:
        source: Raw bytes, a path, or a binary file object.
        formats: Pillow format names to accept; the format is read from the bytes, never
            from a file name or a declared content type.
        max_pixels: Reject images whose declared width x height exceeds this.
        max_jpeg_scans: Reject JPEGs with more scans than this.

    Returns:
        The opened (not yet decoded) image; only its first frame is used later.

    Raises:
        UnsupportedImageFormatError: a recognised image outside ``formats``.
        ImageTooLargeError: declared dimensions above ``max_pixels``.
        InvalidImageError: anything that is not a readable image, or a JPEG with more than
            ``max_jpeg_scans`` scans.
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
    if image.format == "JPEG":
        scans = count_jpeg_scans(_read_all(source))
        if scans > max_jpeg_scans:
            image.close()
            raise InvalidImageError(
                f"the JPEG has {scans:,} scans, above the limit of {max_jpeg_scans:,} (a "
                "progressive JPEG has about 10); re-encode it as a baseline JPEG or a PNG"
            )
    return image


def count_jpeg_scans(data: bytes) -> int:
    """The start-of-scan markers in JPEG bytes: an upper bound on its scans, exact for the
    image data (which stuffs every 0xFF byte with 0x00, so FF DA there is always a
    marker); metadata (an EXIF thumbnail's own scans) can only add to it."""
    return data.count(b"\xff\xda")


def _read_all(source: bytes | Path | BinaryIO) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, Path):
        return source.read_bytes()
    position = source.tell()
    try:
        source.seek(0)
        return source.read()
    finally:
        source.seek(position)


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


def decode_rgb(image: Image.Image, *, reduce: int = 1) -> Image.Image:
    """Decode the first frame, convert any mode to 8-bit RGB and apply EXIF orientation.

    Args:
        reduce: Shrink both sides by this integer factor (box averaging, after the
            conversion to RGB), a strip at a time, so that only the decoded pixels and the
            reduced result are ever whole-image sized.

    Raises:
        InvalidImageError: the pixel data is corrupt or truncated, or the mode cannot be
            represented as RGB.
    """
    try:
        image.seek(0)
        image.load()
        orientation = _exif_orientation(image)
        if reduce == 1:
            rgb = to_rgb(image)
        elif image.mode in ("RGB", "L"):
            rgb = to_rgb(image.reduce(reduce))  # the same pixels, without strips
        else:
            rgb = _reduced_rgb(image, reduce)
        if orientation in _UPRIGHT:
            return rgb.transpose(_UPRIGHT[orientation])
        # A JPEG's own image is returned as it is (an RGB JPEG: most uploads; the copy cost
        # about 2 ms a 720p image, bench/README.md "Where the CPU goes"): load() has read
        # its one frame and released the file. Other formats may keep a file open for
        # further frames, so their pixels are copied out and the caller closes the file.
        if rgb is image and image.format != "JPEG":
            return rgb.copy()
        return rgb
    except InvalidImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise InvalidImageError("the image data is corrupt or truncated") from e


def _reduced_rgb(image: Image.Image, factor: int) -> Image.Image:
    width, height = image.size
    rows = _strip_rows(width, factor)
    if rows >= height:
        return to_rgb(image).reduce(factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        out.paste(to_rgb(strip).reduce(factor), (0, top // factor))
    return out


def _strip_rows(width: int, factor: int) -> int:
    # A multiple of the factor: the same boxes as reducing the whole image at once.
    return factor * max(1, _STRIP_PIXELS // (width * factor))


def reduction_factor(size: tuple[int, int], min_size: int | None) -> int:
    """The integer factor that shrinks ``size`` most while both sides stay >= twice
    ``min_size`` (1: decode at full size).

    Twice: the transform's own antialiased resize then still takes at least a 2x step, so
    the model sees what the full decode would give it (a box reduction straight down to
    ``min_size`` moved a 96-pixel input by 0.05 on average, five times the JPEG draft's
    tolerance); the memory saved is the same to within a factor of four of a small image.
    """
    if min_size is None or min_size <= 0:
        return 1
    return max(1, min(size) // (2 * min_size))


def estimate_decode_bytes(
    image: Image.Image, file_size: tuple[int, int], *, reduce: int = 1
) -> int:
    """What decoding ``image`` (opened, maybe drafted, not yet loaded; ``file_size`` is the
    file's own) to RGB holds at its peak.

    The decoded pixels as Pillow stores them (4 bytes each for every colour mode, 8-bit RGB
    included; 2 for 16-bit grey; 1 for greyscale and palette), a progressive JPEG's
    coefficients (libjpeg keeps them all, at full size whatever the decode scale), the RGB
    result, and what converting to RGB copies on the way (the whole image at full size,
    one strip when reduced).
    """
    width, height = image.size
    pixels = width * height
    result = -(-width // reduce) * -(-height // reduce) * 4
    per_pixel = _STORED_BYTES.get(image.mode, 4)
    if reduce == 1:
        converting = pixels * _CONVERSION_BYTES.get(image.mode, 0)
    else:  # one strip: its copy (unless it is the whole image), conversion and RGB copy
        strip = min(pixels, _strip_rows(width, reduce) * width)
        copy = per_pixel if strip < pixels else 0
        converting = strip * (copy + _CONVERSION_BYTES.get(image.mode, 0) + 4)
    # libjpeg frees its coefficients when decoding ends, before the conversion starts.
    return pixels * per_pixel + max(_jpeg_coefficient_bytes(image, file_size), result + converting)


def _jpeg_coefficient_bytes(image: Image.Image, file_size: tuple[int, int]) -> int:
    layers = getattr(image, "layer", None)
    if image.format != "JPEG" or not image.info.get("progressive") or not layers:
        return 0
    full_width, full_height = file_size  # a draft scales the output, not the coefficients
    h_max = max(layer[1] for layer in layers)
    v_max = max(layer[2] for layer in layers)
    blocks = 0
    for _, h, v, _ in layers:
        columns = math.ceil(math.ceil(full_width * h / h_max) / 8)
        rows = math.ceil(math.ceil(full_height * v / v_max) / 8)
        blocks += columns * rows
    return blocks * 64 * 2


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
    budget: DecodeBudget = DEFAULT_DECODE_BUDGET,
) -> DecodedImage:
    """``load_rgb``, keeping what the file says about itself (format, JPEG quality)."""
    image = open_image(
        source, formats=formats, max_pixels=max_pixels, max_jpeg_scans=budget.max_jpeg_scans
    )
    try:
        file_format = str(image.format)
        quality = estimate_jpeg_quality(image) if file_format == "JPEG" else None
        size = image.size
        if min_size is not None and file_format == "JPEG":
            image.draft(None, (min_size, min_size))
        factor = reduction_factor(image.size, min_size)
        needed = estimate_decode_bytes(image, size, reduce=factor)
        if needed > budget.max_bytes:
            raise ImageTooLargeError(
                f"decoding this {size[0]}x{size[1]} {image.mode} {file_format} needs about "
                f"{needed / 2**20:,.0f} MB, above the limit of {budget.max_bytes / 2**20:,.0f} "
                "MB; downscale it, or send it as an 8-bit RGB JPEG or PNG"
            )
        decoded = decode_rgb(image, reduce=factor)
    except BaseException:
        image.close()
        raise
    if decoded is not image:
        image.close()  # the file's image is no longer needed (the result holds its pixels)
    return DecodedImage(decoded, file_format, quality, size)


def load_rgb(
    source: bytes | Path | BinaryIO,
    *,
    formats: Iterable[str] = DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int | None = None,
    budget: DecodeBudget = DEFAULT_DECODE_BUDGET,
) -> Image.Image:
    """``open_image`` then ``decode_rgb``: untrusted bytes or a file to an upright RGB image.

    Args:
        min_size: If given, the image may be reduced as long as both sides stay >=
            ``min_size``: a JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, in the DCT
            domain), any image is then shrunk by an integer factor while it is converted to
            RGB. The eval transform downsamples to its scale size anyway; decoding a
            12-megapixel photo this way is about six times faster, and a large PNG never
            exists in full as RGB.
        budget: The scan and memory limits (``DecodeBudget``).

    Raises:
        ImageTooLargeError: also when decoding would hold more than ``budget.max_bytes``.
        InvalidImageError: as ``open_image`` and ``decode_rgb``.
    """
    return load_image(
        source, formats=formats, max_pixels=max_pixels, min_size=min_size, budget=budget
    ).image


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """``image`` as a baseline JPEG file of ``quality`` (Pillow's libjpeg, 4:2:0)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def reencode_jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` as a platform that recompresses uploads would return it: encoded as a
    JPEG of ``quality`` and decoded again (training augmentation, calibration and the
    robustness self-check all use this one definition)."""
    with Image.open(io.BytesIO(encode_jpeg(image, quality))) as decoded:
        return decoded.convert("RGB")


def _exif_orientation(image: Image.Image) -> int:
    # Read before converting (the RGB copy has no metadata) and applied after (rotating the
    # reduced image, not the decoded one); getexif also reads an XMP orientation.
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError, UserWarning):
        # Malformed EXIF must not make an otherwise valid image unusable: keep it as stored.
        # (Pillow reports corrupt EXIF as a UserWarning, an exception where warnings are
        # errors; warnings.catch_warnings is not thread-safe, so it is not used here.)
        return 1
    return orientation if isinstance(orientation, int) else 1


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
        return _composite(image if mode == "RGBA" else image.convert("RGBA"))
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
    background.paste(rgba, mask=rgba)  # an RGBA mask is its alpha band, without a copy
    return background


def image_media_type(data: bytes) -> str:
    """The MIME type of bytes the validator accepted (read from the header only)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.get_format_mimetype() or "application/octet-stream"
    except (OSError, ValueError):
        return "application/octet-stream"
