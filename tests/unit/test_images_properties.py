"""Property-based tests of the decoder and validator: whatever the bytes, the outcome is an
upright RGB image or one of the project's own image errors, never anything else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.imagefiles import encode, png_declaring
from veracity.errors import InvalidImageError
from veracity.images import DEFAULT_FORMATS, load_rgb, open_image

MAX_PIXELS = 1_000_000
PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def seed_images() -> dict[str, bytes]:
    """One small valid file per allowed format, as mutation seeds."""
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return {
        fmt: encode(picture.convert("P") if fmt == "GIF" else picture, fmt)
        for fmt in DEFAULT_FORMATS
    }


SEEDS = seed_images()


def decode(data: bytes) -> Image.Image | InvalidImageError:
    # Anything but InvalidImageError (and its 413/415 subclasses) propagates and fails.
    try:
        return load_rgb(data, max_pixels=MAX_PIXELS, min_size=16)
    except InvalidImageError as e:
        return e


def assert_decodes_or_refuses(data: bytes) -> None:
    outcome = decode(data)
    if isinstance(outcome, InvalidImageError):
        assert outcome.status_code in (413, 415, 422)
        assert outcome.message
    else:
        assert outcome.mode == "RGB"
        assert 0 < outcome.width * outcome.height <= MAX_PIXELS


@PROPERTY_SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    assert_decodes_or_refuses(data)


@PROPERTY_SETTINGS
@given(
    st.sampled_from(sorted(SEEDS)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
    st.integers(1, 10_000),
)
def test_mutated_valid_images(fmt: str, flips: list[tuple[int, int]], keep: int) -> None:
    # Flipped bytes land in headers, chunk lengths, dimensions and compressed data alike.
    data = bytearray(SEEDS[fmt])
    for position, value in flips:
        data[position % len(data)] = value
    assert_decodes_or_refuses(bytes(data[: max(1, keep)]))


@PROPERTY_SETTINGS
@given(st.sampled_from(sorted(SEEDS)), st.binary(min_size=1, max_size=64))
def test_magic_bytes_followed_by_garbage(fmt: str, tail: bytes) -> None:
    assert_decodes_or_refuses(SEEDS[fmt][:16] + tail)


@PROPERTY_SETTINGS
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_declared_dimensions_are_checked_before_decoding(width: int, height: int) -> None:
    png = png_declaring(width, height)
    if width * height > MAX_PIXELS:
        with pytest.raises(InvalidImageError) as info:
            open_image(png, max_pixels=MAX_PIXELS)
        assert info.value.status_code == 413
    else:
        assert_decodes_or_refuses(png)
