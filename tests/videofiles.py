"""Small videos written with PyAV for the tests: fast to encode, each frame identifiable."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from fractions import Fraction

import av
import numpy as np

FORMATS = {"mp4": "mp4", "mov": "mov", "webm": "webm", "mkv": "matroska"}


def frame_pixels(index: int, width: int, height: int) -> np.ndarray:
    """A textured frame whose mean brightness encodes ``index`` (recoverable after lossy
    coding: 4 grey levels per frame)."""
    rng = np.random.default_rng(index)
    level = 20 + 4 * (index % 50)
    noise = rng.normal(0, 12, (height, width, 3))
    yy, xx = np.mgrid[0:height, 0:width]
    texture = 10 * np.sin(xx / 5.0)[..., None] + 10 * np.cos(yy / 7.0)[..., None]
    return np.clip(level + texture + noise, 0, 255).astype(np.uint8)


def write_video(
    *,
    container: str = "mp4",
    codec: str = "libx264",
    width: int = 160,
    height: int = 128,
    fps: int = 10,
    seconds: float = 2.0,
    timestamps: Sequence[float] | None = None,
    rotation: int = 0,
    keyframe_interval: int | None = None,
    b_frames: int = 0,
    audio: bool = False,
    extra_video_streams: int = 0,
    pixel_format: str = "yuv420p",
    left_marker: bool = False,
    pixels_of: Callable[[int, int, int], np.ndarray] = frame_pixels,
) -> bytes:
    """Encode a video in memory; ``timestamps`` (seconds) give variable frame timing;
    ``pixels_of(index, width, height)`` draws frame ``index`` (RGB)."""
    times = (
        list(timestamps)
        if timestamps is not None
        else [i / fps for i in range(round(seconds * fps))]
    )
    buffer = io.BytesIO()
    time_base = Fraction(1, 1000)
    with av.open(buffer, mode="w", format=FORMATS[container]) as out:
        streams = []
        for n in range(1 + extra_video_streams):
            stream = out.add_stream(codec, rate=fps)
            assert isinstance(stream, av.VideoStream)
            stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
            options = {"preset": "ultrafast"} if codec == "libx264" else {}
            if keyframe_interval is not None:
                options["g"] = str(keyframe_interval)
            if b_frames:
                options["bf"] = str(b_frames)  # the decoder then holds frames back
            stream.options = options
            if rotation and n == 0:
                stream.set_display_rotation(rotation)
            streams.append(stream)
        audio_stream = out.add_stream("aac", rate=8000) if audio else None
        for i, when in enumerate(times):
            pixels = pixels_of(i, width, height)
            if left_marker:
                pixels[:, :16] = 255  # shows which way a rotation turned the frame
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = round(when * 1000)
            frame.time_base = time_base
            for stream in streams:
                for packet in stream.encode(frame):
                    out.mux(packet)
        for stream in streams:
            for packet in stream.encode():
                out.mux(packet)
        if audio_stream is not None:
            _write_audio(out, audio_stream, seconds=times[-1] if times else seconds)
    return buffer.getvalue()


def write_audio_only(seconds: float = 1.0, container: str = "mp4") -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=FORMATS[container]) as out:
        stream = out.add_stream("aac", rate=8000)
        _write_audio(out, stream, seconds=seconds)
    return buffer.getvalue()


def _write_audio(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    samples = int(8000 * seconds)
    tone = (0.1 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 8000)).astype(np.float32)
    for start in range(0, samples, 1024):
        chunk = tone[start : start + 1024]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = 8000
        frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def frame_index(pixels: np.ndarray) -> int:
    """Inverse of ``frame_pixels``'s brightness code (frames 0-49)."""
    return round((float(pixels.mean()) - 20) / 4)


class _Unseekable(io.RawIOBase):
    """A write-only stream, like a socket: muxers cannot go back to write a duration."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self.data += b
        return len(b)


def write_live_webm(frames: int = 20, fps: int = 10) -> bytes:
    """A WebM as a browser's MediaRecorder writes it: no duration, no seek index."""
    out = _Unseekable()
    with av.open(out, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width = stream.height = 64
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i, 64, 64), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return bytes(out.data)


def patch_box(data: bytes, box: bytes, offset: int, value: int) -> bytes:
    """Overwrite a 32-bit big-endian field ``offset`` bytes after an MP4 box's type."""
    out = bytearray(data)
    at = out.find(box) + offset
    out[at : at + 4] = value.to_bytes(4, "big")
    return bytes(out)


def _annexb(width: int, height: int, frames: int, start: int) -> bytes:
    """Raw H.264 (Annex B, parameter sets in-band) of ``frames`` flat frames."""
    codec = av.CodecContext.create("libx264", "w")
    assert isinstance(codec, av.video.codeccontext.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, 10)
    codec.options = {"preset": "ultrafast", "g": "1"}
    data = bytearray()
    grey = np.full((height, width, 3), 128, np.uint8)
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(grey, format="rgb24")
        frame.pts = start + i
        for packet in codec.encode(frame):
            data += bytes(packet)
    for packet in codec.encode(None):
        data += bytes(packet)
    return bytes(data)


def write_size_switching_video(
    first: tuple[int, int] = (320, 240), then: tuple[int, int] = (8192, 8192), frames: int = 10
) -> bytes:
    """An MP4 whose header declares ``first`` while the stream switches to ``then``-sized
    frames half-way (a new SPS in-band): a declared size that lies about the decoded one."""
    stream = _annexb(*first, frames // 2, 0) + _annexb(*then, frames - frames // 2, frames // 2)
    buffer = io.BytesIO()
    with (
        av.open(io.BytesIO(stream), format="h264") as source,
        av.open(buffer, mode="w", format="mp4") as out,
    ):
        video = source.streams.video[0]
        copy = out.add_stream_from_template(video)
        for index, packet in enumerate(source.demux(video)):
            if packet.size == 0:
                continue
            packet.stream = copy
            packet.time_base = Fraction(1, 10)
            packet.pts = packet.dts = index
            packet.duration = 1
            out.mux(packet)
    return buffer.getvalue()


@functools.cache
def write_decode_heavy_clip() -> bytes:
    """20 s of 720p H.264 at 25 fps with one keyframe: each sample decodes forward from it,
    so a server spends seconds inside FFmpeg on it, as with a phone's clip under load."""
    strip = frame_pixels(0, 1280 + 400, 720)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.time_base = Fraction(1, 25)
        stream.options = {"preset": "ultrafast", "g": "1000"}
        for i in range(500):
            pixels = np.ascontiguousarray(strip[:, i % 400 : i % 400 + 1280])
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()
