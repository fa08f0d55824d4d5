import numpy as np
import pytest
from PIL import Image

from tests.imagefiles import encode
from veracity.errors import (
    ImageTooLargeError,
    InvalidImageError,
    UnsupportedImageFormatError,
)
from veracity.images import load_rgb, open_image, to_rgb


def marker_image() -> Image.Image:
    """An asymmetric 40x20 image: red left half, blue top-right, green bottom-right."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:10, 20:] = (0, 0, 255)
    pixels[10:, 20:] = (0, 255, 0)
    return Image.fromarray(pixels)


# EXIF orientation value -> the transpose that undoes it (the TIFF/EXIF definition).
ORIENTATIONS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_every_exif_orientation_is_applied(orientation: int) -> None:
    upright = marker_image()
    # Store the pixels the way a camera with this orientation would have: the inverse view.
    inverse = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    stored = upright.transpose(inverse[orientation]) if orientation in inverse else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "PNG", exif=exif)
    result = load_rgb(data)
    assert result.size == upright.size
    assert np.array_equal(np.asarray(result), np.asarray(upright))


def test_malformed_exif_keeps_the_image_as_stored() -> None:
    image = marker_image()
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    result = load_rgb(encode(image, "PNG", exif=exif))
    assert np.array_equal(np.asarray(result), np.asarray(image))
    garbage_exif = encode(image, "JPEG", exif=b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff")
    assert load_rgb(garbage_exif).size == image.size


def mode_image(mode: str) -> Image.Image:
    rgb = marker_image()
    if mode == "I;16":
        values = (np.linspace(0, 65535, 40 * 20).reshape(20, 40)).astype(np.uint16)
        image = Image.fromarray(values)
        assert image.mode == "I;16"
        return image
    if mode == "I":
        return Image.fromarray((np.arange(800).reshape(20, 40) * 80).astype(np.int32), mode="I")
    if mode == "F":
        return Image.fromarray(np.full((20, 40), 128.0, dtype=np.float32), mode="F")
    if mode == "PA":
        return rgb.convert("P").convert("PA")
    return rgb.convert(mode)


@pytest.mark.parametrize(
    "mode",
    ["RGB", "L", "1", "P", "PA", "LA", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV", "I;16", "I", "F"],
)
def test_every_pillow_mode_becomes_8bit_rgb(mode: str) -> None:
    result = to_rgb(mode_image(mode))
    assert result.mode == "RGB"
    assert result.size == (40, 20)


def test_sixteen_bit_greyscale_is_rescaled_not_clipped() -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    result = np.asarray(to_rgb(Image.fromarray(values)))
    assert result[0, :, 0].tolist() == [0, 128, 255]


def test_transparent_pixels_are_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]
    half = Image.new("LA", (4, 4), (0, 128))
    assert 126 <= np.asarray(to_rgb(half))[0, 0, 0] <= 128


def test_palette_with_transparency_is_composited() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    image.info["transparency"] = 0
    data = encode(image, "PNG", transparency=0)
    assert np.asarray(load_rgb(data))[0, 0].tolist() == [255, 255, 255]


def test_unsupported_mode_is_a_clear_error() -> None:
    with pytest.raises(InvalidImageError, match="colour mode LAB"):
        to_rgb(Image.new("LAB", (2, 2)))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_allowed_formats_decode(fmt: str) -> None:
    assert load_rgb(encode(marker_image(), fmt)).size == (40, 20)


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "TGA"])
def test_formats_outside_the_allowlist_are_rejected_by_name(fmt: str) -> None:
    with pytest.raises(UnsupportedImageFormatError, match=fmt):
        open_image(encode(marker_image(), fmt))


def test_format_comes_from_bytes_not_from_a_name() -> None:
    png = encode(marker_image(), "PNG")
    assert open_image(png, formats=("PNG",)).format == "PNG"
    with pytest.raises(UnsupportedImageFormatError):
        open_image(png, formats=("JPEG",))


@pytest.mark.parametrize("data", [b"", b"hello world", bytes(range(256)) * 10])
def test_non_images_are_rejected(data: bytes) -> None:
    with pytest.raises(InvalidImageError, match="not a readable image"):
        open_image(data)


def test_truncated_image_is_rejected_at_decode() -> None:
    data = encode(Image.effect_noise((256, 256), 50).convert("RGB"), "JPEG")
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        load_rgb(data[: len(data) // 2])


def test_pixel_limit_is_checked_before_decoding() -> None:
    data = encode(Image.new("RGB", (300, 300)), "PNG")
    with pytest.raises(ImageTooLargeError, match="90,000 pixels"):
        open_image(data, max_pixels=50_000)
    assert open_image(data, max_pixels=90_000).size == (300, 300)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    result = np.asarray(load_rgb(encode(frames[0], "GIF", save_all=True, append_images=frames[1:])))
    assert result[0, 0].tolist() == [255, 0, 0]
