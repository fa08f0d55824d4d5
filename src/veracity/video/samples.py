"""Synthetic sample videos: a camera-like scene, optionally manipulated between two times.

Built from the same scene, noise and manipulation traces as the sample images
(veracity.sampledata), so a model trained on those images can find the manipulated
stretch in a video's timeline. Each frame is the scene, slowly panned, with fresh sensor
noise and a camera's JPEG-like encode; inside the manipulated stretch a generator region
with a blending seam and a double JPEG history is blended in, as in a face swap.

The default encoding is H.264 High 4:4:4 (full-resolution colour). Most real-world video
is 4:2:0, which the demo model, trained on still images, has never seen: it answers
such frames ``inconclusive`` / ``out_of_distribution``, which is the honest answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from veracity.sampledata import generator_region, jpeg_roundtrip, scene, sensor_noise


@dataclass(frozen=True)
class SampleVideoSpec:
    seconds: float = 6.0
    fps: int = 10
    size: tuple[int, int] = (384, 256)  # width, height
    manipulated: tuple[float, float] | None = None  # [start, end) in seconds
    codec: str = "libx264"
    pixel_format: str = "yuv444p"
    crf: int = 18
    keyframe_interval: int | None = None  # frames; None: the encoder's default
    rotation: int = 0  # display rotation, degrees counter-clockwise
    # Frame times (seconds) for variable frame rate; None: constant ``fps``.
    timestamps: tuple[float, ...] | None = None


def write_sample_video(path: Path, *, seed: int, spec: SampleVideoSpec | None = None) -> int:
    """Write the video to ``path`` (the container follows the suffix); returns its frame
    count."""
    spec = spec or SampleVideoSpec()
    rng = np.random.default_rng(seed)
    width, height = spec.size
    side = max(width, height) + 64
    clean = scene(rng, side)
    generated, mask = generator_region(rng, clean)
    times = (
        list(spec.timestamps)
        if spec.timestamps is not None
        else [i / spec.fps for i in range(round(spec.seconds * spec.fps))]
    )
    # Milliseconds: fine enough for any frame rate used here, and for irregular timing.
    time_base = Fraction(1, 1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(spec.codec, rate=spec.fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = width, height
        stream.pix_fmt = spec.pixel_format
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        options: dict[str, object] = (
            {"crf": str(spec.crf)} if spec.codec in ("libx264", "libx265") else {}
        )
        if spec.keyframe_interval is not None:
            options["g"] = str(spec.keyframe_interval)
        stream.options = options
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        for i, when in enumerate(times):
            # A slow pan: the crop window moves one pixel every other frame.
            x, y = (i // 2) % 64, (i // 4) % 64
            frame = sensor_noise(rng, clean, 7.0)
            if spec.manipulated is not None and spec.manipulated[0] <= when < spec.manipulated[1]:
                frame = frame * (1 - mask) + generated * mask
                frame = jpeg_roundtrip(frame, 45)
            frame = jpeg_roundtrip(frame, 90)[y : y + height, x : x + width]
            pixels = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            video_frame.pts = round(when * 1000)
            video_frame.time_base = time_base
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return len(times)
