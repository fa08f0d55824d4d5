"""Decoding is bounded by work and memory, not only by declared pixels: a JPEG's scans are
counted before decoding, and what a decode will hold is estimated and refused over budget."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from tests.imagefiles import encode, jpeg_scan_bomb, png_rgba16
from veracity.errors import ImageTooLargeError, InvalidImageError
from veracity.images import (
    DecodeBudget,
    count_jpeg_scans,
    decode_rgb,
    estimate_decode_bytes,
    load_image,
    open_image,
    to_rgb,
)
from veracity.similarity.phash import hash_image, perceptual_hash

MB = 2**20


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding() -> None:
    bomb = jpeg_scan_bomb(1024, 3000)
    started = time.perf_counter()
    with pytest.raises(InvalidImageError, match=r"3,010 scans, above the limit of 100"):
        load_image(bomb, min_size=224)
    assert time.perf_counter() - started < 0.5
    # Nor does the perceptual hash decode it.
    assert perceptual_hash(bomb, ("JPEG",)) is None


def test_an_ordinary_progressive_jpeg_is_well_within_the_scan_limit() -> None:
    data = encode(Image.linear_gradient("L").convert("RGB"), "JPEG", progressive=True)
    assert 1 < count_jpeg_scans(data) <= 12
    assert load_image(data).image.size == (256, 256)
    assert load_image(data, budget=DecodeBudget(max_jpeg_scans=count_jpeg_scans(data))).format


def test_the_estimate_follows_the_mode_and_the_reduction() -> None:
    size = (4000, 3000)  # above one strip: reduced, it is converted a strip at a time
    grey = open_image(encode(Image.new("L", size), "PNG"))
    rgba = open_image(encode(Image.new("RGBA", size), "PNG"))
    full = estimate_decode_bytes(rgba, size)
    assert estimate_decode_bytes(grey, size) < full
    assert estimate_decode_bytes(rgba, size, reduce=8) < full * 0.9
    # 4 bytes a pixel stored and 4 for the RGB result: what a full-size RGBA decode holds.
    assert full == pytest.approx(4000 * 3000 * 8, rel=0.01)


def test_an_image_over_the_byte_budget_is_refused_with_what_it_would_cost() -> None:
    data = png_rgba16(3000, 3000)  # 8 bytes a pixel in the file, 4 as Pillow stores it
    with pytest.raises(ImageTooLargeError, match=r"needs about \d+ MB, above the limit of 40"):
        load_image(data, budget=DecodeBudget(max_bytes=40 * MB))
    # Within the default budget it decodes, reduced as the model's transform allows.
    assert load_image(data, min_size=256).image.size == (600, 600)  # 3000 // (3000 // 512)
    assert ImageTooLargeError.status_code == 413


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "L", "RGB"])
def test_a_reduced_decode_is_the_full_decode_reduced(mode: str) -> None:
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (301, 517, 4), dtype=np.uint8), "RGBA")
    if mode == "I;16":
        source = Image.fromarray(rng.integers(0, 65536, (301, 517), dtype=np.uint16))
    elif mode == "P":
        source = rgba.convert("RGB").quantize(64)
        source.info["transparency"] = 3
    else:
        source = rgba.convert(mode)
    data = encode(source, "PNG")
    expected = to_rgb(open_image(data).convert(source.mode)).reduce(3)
    reduced = decode_rgb(open_image(data), reduce=3)
    assert reduced.size == expected.size == (173, 101)
    assert np.array_equal(np.asarray(reduced), np.asarray(expected))


def test_the_hash_of_the_decoded_image_matches_the_hash_of_the_bytes() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((800, 600), Image.Resampling.BICUBIC)
    data = encode(image, "PNG")
    decoded = load_image(data, min_size=256).image
    from_bytes = perceptual_hash(data, ("PNG",))
    assert from_bytes is not None
    distance = bin(int(hash_image(decoded), 16) ^ int(from_bytes, 16)).count("1")
    assert distance <= 8
