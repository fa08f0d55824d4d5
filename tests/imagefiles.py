"""Builders of image files for tests: encoded images and hand-made headers."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of about 100 bytes whose header claims width x height RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def png_rgba16(width: int, height: int) -> bytes:
    """A 16-bit RGBA PNG of one colour: 8 bytes a pixel, compressed about 1,000:1."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * (width * 8)  # filter type 0, then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def jpeg_scan_bomb(size: int, repeats: int) -> bytes:
    """A valid progressive JPEG with its smallest AC scan repeated ``repeats`` more times:
    each copy is a few bytes, and a decoder runs it over the whole image again."""
    smooth = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    data = encode(smooth, "JPEG", progressive=True)
    scans = []
    position = 2
    while data[position + 1] != 0xD9:  # up to the end-of-image marker
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        end = position + 2 + length
        if data[position + 1] == 0xDA:  # start of scan: its image data runs to a marker
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1
            spectral_start = data[position + 5 + 2 * data[position + 4]]
            if spectral_start > 0:
                scans.append(data[position:end])
        position = end
    return data[:position] + min(scans, key=len) * repeats + data[position:]
