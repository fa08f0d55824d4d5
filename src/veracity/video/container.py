"""What a video file is before a frame is decoded: its container, recognised by its own
magic bytes, the codecs accepted, and what the reader found in it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Decoder names -> the codec a client would name. AV1 is decoded by dav1d when present.
CODECS = {
    "h264": "h264",
    "hevc": "hevc",
    "vp8": "vp8",
    "libvpx": "vp8",
    "vp9": "vp9",
    "libvpx-vp9": "vp9",
    "av1": "av1",
    "libdav1d": "av1",
    "libaom-av1": "av1",
}

Container = Literal["mp4", "matroska"]


@dataclass(frozen=True)
class VideoInfo:
    container: Container
    codec: str
    width: int  # as coded (before the display rotation)
    height: int
    duration_s: float
    frame_rate: float | None  # average; None when the container does not say


def detect_container(head: bytes) -> Container | None:
    """MP4/MOV by their leading box type, Matroska/WebM by the EBML magic."""
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    return None


def read_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(12)
