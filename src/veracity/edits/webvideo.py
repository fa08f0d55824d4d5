"""Photographs as ordinary web video: a slow pan and zoom over a still, encoded as H.264 or
VP9 (4:2:0, web CRF) with PyAV, and decoded back.

A model that only ever saw stills learns that block artefacts, chroma subsampling and
motion-compensated smearing mean "not a camera photo", and calls ordinary web video fake
(issue 21, item 5). Training frames that really went through those codecs teach it
otherwise. A fake is the same clip made from the edited still (the edit is in the scene
before the camera moves over it, as in a manipulated clip), its mask moved through the same
pan and zoom; or a clip edited only between two timestamps (``switch_motion``), whose other
frames are the real clip's. PyAV's wheel bundles FFmpeg with libx264 and libvpx-vp9
(``tests/unit/test_webvideo.py`` checks both encoders are there). It lives below training
and evaluation because both make these clips: training from its corpus, the held-out
evaluation from photographs it never trained on.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from veracity.edits.regions import Image, Mask, check_image

# PyAV encoder name, container, and the options that make it a typical web encode: CRF
# (constant quality) at web settings, speed presets a server would use for uploads.
CODECS: dict[str, tuple[str, str]] = {"h264": ("libx264", "mp4"), "vp9": ("libvpx-vp9", "webm")}
_ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "h264": {"preset": "veryfast"},
    # b=0 makes libvpx-vp9's crf a constant-quality mode (not a cap on a target bitrate);
    # realtime / cpu-used 8 keeps it near libx264's speed (measured: 0.4 s for 12 frames at
    # 1024x576 on one core; the "good" deadline took 2.7 s).
    "vp9": {"b": "0", "deadline": "realtime", "cpu-used": "8"},
}


@dataclass(frozen=True)
class WebVideoOptions:
    """What ``draw_web_video`` draws from; the defaults are the issue's web video."""

    codecs: tuple[str, ...] = ("h264", "vp9")
    crf: dict[str, tuple[int, int]] | None = None  # per codec; None: h264 20-28, vp9 30-38
    max_size: tuple[int, int] = (1280, 720)  # long side, short side
    frames: int = 8
    fps: int = 24
    zoom: tuple[float, float] = (0.85, 1.0)  # the window's share of the still, start/end
    max_pan: float = 0.05  # the window's centre moves at most this share of the still

    def crf_range(self, codec: str) -> tuple[int, int]:
        defaults = {"h264": (20, 28), "vp9": (30, 38)}
        return (self.crf or defaults)[codec]


@dataclass(frozen=True)
class WebVideoParams:
    """One clip: codec and CRF, frame size and count, and the window over the still at the
    first and the last frame (centre in still pixels, scale as a share of the still)."""

    codec: str
    crf: int
    width: int
    height: int
    frames: int
    fps: int
    start: tuple[float, float, float]  # centre x, centre y, scale
    end: tuple[float, float, float]


@dataclass(frozen=True)
class WebVideo:
    frames: list[Image]
    masks: list[Mask] | None
    params: WebVideoParams
    encoded_bytes: int


def frame_size(height: int, width: int, max_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the clip: the still's aspect within ``max_size``, even sides
    (4:2:0 needs them), never larger than the still."""
    long_cap, short_cap = max_size
    scale = min(1.0, long_cap / max(height, width), short_cap / min(height, width))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def draw_web_video(
    rng: np.random.Generator, height: int, width: int, options: WebVideoOptions = WebVideoOptions()
) -> WebVideoParams:
    """The parameters of one clip over a still of this size."""
    codec = options.codecs[int(rng.integers(len(options.codecs)))]
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")
    low, high = options.crf_range(codec)
    out_w, out_h = frame_size(height, width, options.max_size)
    scales = rng.uniform(*options.zoom, size=2)
    if rng.random() < 0.5:
        scales = scales[::-1]  # zoom in or out
    windows = []
    for scale in scales:
        # The centre keeps the window inside the still and near the middle (a slow pan).
        room_x = min((1 - scale) / 2, options.max_pan) * width
        room_y = min((1 - scale) / 2, options.max_pan) * height
        cx = width / 2 + float(rng.uniform(-room_x, room_x))
        cy = height / 2 + float(rng.uniform(-room_y, room_y))
        windows.append((round(cx, 3), round(cy, 3), round(float(scale), 4)))
    return WebVideoParams(
        codec=codec,
        crf=int(rng.integers(low, high + 1)),
        width=out_w,
        height=out_h,
        frames=options.frames,
        fps=options.fps,
        start=windows[0],
        end=windows[1],
    )


def render_motion(
    still: Image, params: WebVideoParams, mask: Mask | None = None
) -> tuple[list[Image], list[Mask] | None]:
    """The clip's frames before encoding (and the mask moved with them): the window slides
    and scales linearly from ``start`` to ``end``, resampled bilinearly."""
    frames: list[Image] = []
    masks: list[Mask] = []
    for frame, moved in _moving(still, params, mask):
        frames.append(frame)
        if moved is not None:
            masks.append(moved)
    return frames, None if mask is None else masks


def switch_motion(
    still: Image, edited: Image, mask: Mask, params: WebVideoParams, edited_frames: range
) -> Iterator[tuple[Image, Mask]]:
    """The frames of ``still``'s clip, except that ``edited_frames`` show ``edited`` under
    the same motion: a clip edited only between two timestamps. Each frame comes with the
    pixels its edit wrote (``mask`` moved with it; none outside ``edited_frames``). One
    frame at a time, so a long clip at 720p never sits in memory whole.

    Raises:
        ValueError: the stills or the mask differ in size, or ``edited_frames`` is not a
            run of the clip's frames.
    """
    if edited.shape != still.shape or mask.shape != still.shape[:2]:
        raise ValueError("the edited still and its mask must match the still's size")
    if edited_frames.step != 1 or not 0 <= edited_frames.start <= edited_frames.stop:
        raise ValueError(f"edited_frames must be a run of frames, got {edited_frames}")
    if edited_frames.stop > params.frames:
        raise ValueError(f"edited_frames {edited_frames} runs past the clip's {params.frames}")
    originals = _moving(still, params, None)
    changed = _moving(edited, params, mask)
    for index, ((frame, _), (edited_frame, moved)) in enumerate(
        zip(originals, changed, strict=True)
    ):
        assert moved is not None  # _moving moves a mask it is given
        if index in edited_frames:
            yield edited_frame, moved
        else:
            yield frame, np.zeros_like(moved)


def _moving(
    still: Image, params: WebVideoParams, mask: Mask | None
) -> Iterator[tuple[Image, Mask | None]]:
    check_image(still, "still")
    # Bilinear sampling of a still much larger than the frame would alias: shrink it first
    # (area-averaged) to the frame's scale, and the window's centre with it.
    ratio = min(1.0, params.width / still.shape[1])
    if ratio < 0.75:
        shrunk = (params.width, max(2, round(still.shape[0] * ratio)))
        still = np.asarray(cv2.resize(still, shrunk, interpolation=cv2.INTER_AREA), np.uint8)
        if mask is not None:
            small = cv2.resize(mask.astype(np.uint8), shrunk, interpolation=cv2.INTER_NEAREST)
            mask = np.asarray(small, dtype=bool)
    else:
        ratio = 1.0
    width = still.shape[1]
    size = (params.width, params.height)
    for i in range(params.frames):
        t = i / max(1, params.frames - 1)
        cx, cy, scale = (a + (b - a) * t for a, b in zip(params.start, params.end, strict=True))
        cx, cy = cx * ratio, cy * ratio
        # One still pixel per output pixel times k; the same k on both axes keeps the aspect.
        k = scale * width / params.width
        matrix = np.array(
            [[k, 0.0, cx - k * params.width / 2], [0.0, k, cy - k * params.height / 2]]
        )
        flags = cv2.WARP_INVERSE_MAP
        frame = cv2.warpAffine(
            still, matrix, size, flags=flags | cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        moved = None
        if mask is not None:
            warped = cv2.warpAffine(
                mask.astype(np.uint8), matrix, size, flags=flags | cv2.INTER_NEAREST
            )
            moved = np.asarray(warped, dtype=bool)
        yield np.asarray(frame, dtype=np.uint8), moved


def encode_clip(frames: Iterable[Image], params: WebVideoParams) -> bytes:
    """The frames as an MP4 (H.264) or WebM (VP9) file in memory, yuv420p."""
    encoder, container = CODECS[params.codec]
    buffer = io.BytesIO()
    time_base = Fraction(1, params.fps)
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(encoder, rate=params.fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = params.width, params.height, "yuv420p"
        stream.time_base = time_base
        stream.options = {**_ENCODER_OPTIONS[params.codec], "crf": str(params.crf)}
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = index
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def decode_clip(data: bytes) -> list[Image]:
    """Every frame of an encoded clip, as 8-bit RGB."""
    with av.open(io.BytesIO(data), mode="r") as container:
        return [
            np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            for frame in container.decode(video=0)
        ]


def web_video(still: Image, params: WebVideoParams, mask: Mask | None = None) -> WebVideo:
    """``still`` as a short web clip, encoded and decoded back (``mask``: the edit's, moved
    with the frames; for a fake, pass the edited still and its mask).

    Raises:
        ValueError: the still is not 8-bit RGB of at least 64 px a side.
        RuntimeError: the codec returned another number of frames than it was given.
    """
    frames, masks = render_motion(still, params, mask)
    data = encode_clip(frames, params)
    decoded = decode_clip(data)
    if len(decoded) != len(frames):
        raise RuntimeError(f"{params.codec} gave back {len(decoded)} of {len(frames)} frames")
    return WebVideo(frames=decoded, masks=masks, params=params, encoded_bytes=len(data))
