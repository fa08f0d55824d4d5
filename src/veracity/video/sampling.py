"""Sampling frames from untrusted video bytes with PyAV (FFmpeg), under limits.

What is checked before a single frame is decoded: the container (MP4/MOV or Matroska/WebM,
recognised by its own magic bytes and opened with that demuxer only, so FFmpeg never
probes the other demuxers, several of which open further files or URLs), the number of
streams, that there is a video stream, its codec (H.264, HEVC, VP8, VP9, AV1), its
declared dimensions and its duration.

Decoding then goes only as far as the samples need. Each sample stands for its own
interval of the video (1/N of it, or ``every_s`` seconds), centred on its target time. Where
the container's index shows a keyframe inside that interval, the decoder seeks to the one
nearest the target and takes it: one decoded frame per sample (its packet alone, then the
decoder drained, so B-frame reordering does not make it decode the frames after it).
Otherwise it seeks to the keyframe before the target when that skips frames (without an
index, when the gap is more than a few seconds), takes that keyframe if it lies within half
a spacing (at most 1 s) of the target, and else decodes forward to the frame nearest the
target. Timestamps are the frames' own presentation times, so variable frame rates are
reported as they are. A phone's rotation (the display matrix) is applied. Frames are
yielded one at a time: the caller keeps only what it makes of them, so memory does not
grow with the file. The whole sampling runs under a time budget.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import av
from PIL import Image

from veracity.errors import (
    InvalidVideoError,
    UnsupportedVideoFormatError,
    VideoDecodeTimeoutError,
    VideoTooLargeError,
)
from veracity.video.container import (
    CODECS,
    Container,
    VideoInfo,
    detect_container,
    read_head,
)
from veracity.video.plan import SamplingPlan, VideoLimits

# Without a container index, seek only past gaps longer than this: decoding forward a few
# seconds is cheaper than a seek that lands on the same keyframe.
_SEEK_GAP_S = 3.0
# Keyframe snapping: at most half the spacing between samples, and never more than this.
_MAX_SNAP_S = 1.0


@dataclass(frozen=True)
class SampledFrame:
    target_s: float
    timestamp_s: float  # the frame's own presentation time, from the stream's start
    image: Image.Image  # RGB, upright


@dataclass
class SamplingStats:
    decoded: int = 0  # frames the decoder produced, sampled or not
    seeks: int = 0
    rotation: int = 0  # display rotation of the sampled frames, degrees counter-clockwise


@dataclass
class _Cursor:
    """Where decoding stands while sampling: the decoder's frames (None: seek before more),
    a frame decoded past one target and kept for the next, and the times of the last frame
    decoded and of the last one taken."""

    frames: Iterator[av.VideoFrame] | None = None
    pending: av.VideoFrame | None = None
    position: float = -math.inf
    last_taken: float = -math.inf


class VideoReader:
    """An opened, validated video. Use as a context manager; ``sample`` yields frames."""

    def __init__(self, source: bytes | Path, limits: VideoLimits) -> None:
        self.limits = limits
        self.stats = SamplingStats()
        # Held by every step that reaches into FFmpeg and by close(): a request cancelled
        # (a hang-up, a deadline, a shutdown) while its step runs in a video thread must not
        # have the container closed beneath that step from another thread (SIGSEGV).
        self._lock = threading.Lock()
        self._closed = False
        # The budget counts time spent decoding only, not time the caller spends between
        # frames (waiting for the model under load is not the file's fault).
        self._spent = 0.0
        self._resumed = time.monotonic()
        head = source[:12] if isinstance(source, bytes) else read_head(source)
        container = detect_container(head)
        if container is None:
            raise UnsupportedVideoFormatError(
                "not an MP4, MOV, WebM or MKV file; send a video in one of those containers"
            )
        # Always a file object, never a name: FFmpeg would read a name such as "concat:a|b"
        # or "http://..." as a protocol.
        self._file: BinaryIO = (
            io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")
        )
        stream_input: Any = self._file
        try:
            self._container = av.open(
                stream_input,
                mode="r",
                format="mov" if container == "mp4" else "matroska",
                # MOV reference movies may point at other files: never follow them.
                options={"enable_drefs": "0"} if container == "mp4" else {},
                metadata_errors="ignore",
                timeout=limits.decode_timeout_s,
            )
        except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError) as e:
            self._file.close()
            raise InvalidVideoError(
                f"not a readable {'MP4/MOV' if container == 'mp4' else 'WebM/MKV'} file "
                f"({_describe(e)}); send a complete, uncorrupted video"
            ) from e
        try:
            self.info = self._validate(container)
        except av.FFmpegError as e:  # e.g. demuxing a damaged file to measure its duration
            self.close()
            raise InvalidVideoError(
                f"the video could not be read ({_describe(e)}); send a complete, uncorrupted video"
            ) from e
        except BaseException:
            self.close()
            raise
        self._pause()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; waits for a step under way in another thread to finish."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._container.close()
            self._file.close()

    @contextlib.contextmanager
    def stepping(self) -> Iterator[bool]:
        """Hold the reader for one step in this thread; yields False once it is closed (the
        request that opened it is gone, so the step has nothing to do)."""
        with self._lock:
            yield not self._closed

    def _pause(self) -> None:
        now = time.monotonic()
        self._spent += now - self._resumed
        self._resumed = now

    def _resume(self) -> None:
        self._resumed = time.monotonic()

    def _validate(self, container: Container) -> VideoInfo:
        streams = len(self._container.streams)
        if streams > self.limits.max_streams:
            raise VideoTooLargeError(
                f"the file has {streams} streams; at most {self.limits.max_streams} are accepted"
            )
        videos = self._container.streams.video
        if not videos:
            raise InvalidVideoError(
                "the file has no video stream (audio only or data only); send a video"
            )
        stream = videos[0]
        context = stream.codec_context
        if context is None:  # FFmpeg has no decoder for this codec at all
            raise UnsupportedVideoFormatError(
                f"the video codec is not one this service decodes; send "
                f"{', '.join(c.upper() for c in self.limits.codecs)}"
            )
        decoder = context.name
        codec = CODECS.get(decoder)
        if codec is None or codec not in self.limits.codecs:
            raise UnsupportedVideoFormatError(
                f"video codec {decoder!r} is not accepted; send "
                f"{', '.join(c.upper() for c in self.limits.codecs)}"
            )
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise InvalidVideoError("the video stream declares no frame size")
        if width * height > self.limits.max_pixels:
            raise VideoTooLargeError(
                f"frames of {width}x{height} exceed the {self.limits.max_pixels:,} pixel "
                "limit; send a smaller rendition"
            )
        self._stream = stream
        # The declared size is only the header's word: an in-band parameter set can switch
        # the stream to 8192x8192 frames. FFmpeg's own pixel cap makes the decoder refuse
        # such frames before it allocates them (and its reference frames).
        context.options = {**context.options, "max_pixels": str(self.limits.max_pixels)}
        # Slice threads: frame threads must refill their pipeline after every seek, which
        # measured 30% slower per sampled frame on 720p and 1080p H.264.
        stream.thread_type = "SLICE"
        self._start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        duration = self._duration()
        if duration > self.limits.max_duration_s:
            raise VideoTooLargeError(
                f"the video lasts {duration:.1f} s; at most {self.limits.max_duration_s:g} s "
                "are analysed in one request. Send a shorter clip."
            )
        rate = stream.average_rate
        return VideoInfo(
            container=container,
            codec=codec,
            width=width,
            height=height,
            duration_s=round(duration, 6),
            frame_rate=float(rate) if rate else None,
        )

    def _duration(self) -> float:
        stream = self._stream
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            return float(stream.duration * stream.time_base)
        if self._container.duration is not None and self._container.duration > 0:
            return float(self._container.duration / av.time_base)
        # No duration in the header (a MediaRecorder WebM): demux, without decoding, to the
        # last packet's end. Bounded by the upload size and the time budget.
        end = 0.0
        for packet in self._container.demux(stream):
            self._check_deadline()
            if packet.pts is not None and packet.time_base is not None:
                stop = packet.pts + (packet.duration or 0)
                end = max(end, float(stop * packet.time_base) - self._start)
        self._container.seek(0)
        return end

    def _keyframe_times(self) -> list[float]:
        times = []
        for entry in self._stream.index_entries:
            if entry.is_keyframe and self._stream.time_base is not None:
                times.append(float(entry.timestamp * self._stream.time_base) - self._start)
        return sorted(times)

    def _check_deadline(self) -> None:
        if self._spent + time.monotonic() - self._resumed > self.limits.decode_timeout_s:
            raise VideoDecodeTimeoutError(
                f"sampling the frames took longer than {self.limits.decode_timeout_s:g} s "
                f"({self.stats.decoded} frames decoded); the file is too costly to decode. "
                "Send a shorter or lower-resolution clip."
            )

    def sample(self, plan: SamplingPlan) -> Iterator[SampledFrame]:
        """Yield the planned frames in time order (fewer where the stream ends early or a
        damaged stretch stops decoding).

        Raises:
            VideoTooLargeError: the plan asks for more frames than allowed.
            VideoDecodeTimeoutError: the time budget ran out.
        """
        self._resume()
        duration = self.info.duration_s
        targets = plan.targets(0.0, duration, self.limits)
        spacing = duration / len(targets) if targets else duration
        snap = min(spacing / 2, _MAX_SNAP_S)
        keyframes = self._keyframe_times()
        cursor = _Cursor()
        for target in targets:
            # A keyframe inside this sample's own interval costs one decode: prefer it.
            window = (target - spacing / 2, target + spacing / 2)
            inside = [k for k in keyframes if window[0] < k < window[1] and k > cursor.last_taken]
            key = min(inside, key=lambda k: abs(k - target)) if inside else None
            found = None
            if key is not None and key > cursor.position:
                found = self._take_keyframe(cursor, _between(key, keyframes), window)
            if found is None:
                chosen = self._decode_towards(cursor, target, key, keyframes, window, snap)
                if chosen is None:
                    return  # the stream ended (or broke) before this target
                found = chosen, self._time(chosen, -math.inf)
                cursor.last_taken = found[1]
            sampled = SampledFrame(
                target_s=round(target, 6),
                timestamp_s=round(found[1], 6),
                image=self._upright(found[0]),
            )
            self._pause()
            yield sampled
            self._resume()
        self._pause()

    def _take_keyframe(
        self, cursor: _Cursor, aim: float, window: tuple[float, float]
    ) -> tuple[av.VideoFrame, float] | None:
        # Index times are decode times; a seek lands by presentation time, which can be a
        # few frames later: ``aim`` lies between this keyframe and the next.
        found = self._keyframe(aim)
        cursor.frames, cursor.pending = None, None  # the decoder was drained: seek before more
        if found is None or not window[0] < found[1] < window[1] or found[1] <= cursor.last_taken:
            return None
        cursor.position = cursor.last_taken = found[1]
        return found

    def _decode_towards(
        self,
        cursor: _Cursor,
        target: float,
        key: float | None,
        keyframes: list[float],
        window: tuple[float, float],
        snap: float,
    ) -> av.VideoFrame | None:
        """The decoded frame nearest ``target`` (``key``'s keyframe where it lands in the
        window); None where the stream ends first."""
        aim = target if key is None else key
        if cursor.frames is None or self._should_seek(cursor.position, aim, keyframes):
            cursor.pending = None
            cursor.frames = self._seek(aim if key is None else _between(key, keyframes))
        frames = cursor.frames
        previous: av.VideoFrame | None = None
        while True:
            frame = cursor.pending if cursor.pending is not None else self._next(frames)
            cursor.pending = None
            if frame is None:
                return previous
            when = self._time(frame, cursor.position)
            cursor.position = when
            if when <= cursor.last_taken:
                continue
            if key is not None and frame.key_frame and window[0] < when < window[1]:
                return frame
            if when >= target or (frame.key_frame and target - when < snap):
                if (
                    previous is not None
                    and not (frame.key_frame and when < target)
                    and target - self._time(previous, -math.inf) < when - target
                ):
                    cursor.pending = frame
                    return previous
                return frame
            previous = frame

    def _should_seek(self, position: float, target: float, keyframes: list[float]) -> bool:
        if target <= position:
            return False
        if keyframes:
            # Worth it only when a keyframe lies between here and the target.
            return any(position < k <= target for k in keyframes)
        return target - position > _SEEK_GAP_S

    def _seek_before(self, target: float) -> bool:
        """Seek to the keyframe at or before ``target``; False where the file cannot seek
        (a damaged index), leaving the position where it was."""
        stream = self._stream
        assert stream.time_base is not None
        self._check_deadline()
        try:
            self._container.seek(
                int((target + self._start) / stream.time_base),
                stream=stream,
                backward=True,
                any_frame=False,
            )
        except av.FFmpegError:
            return False
        self.stats.seeks += 1
        return True

    def _seek(self, target: float) -> Iterator[av.VideoFrame]:
        # Not seekable: decode from where we are.
        self._seek_before(target)
        return iter(self._container.decode(self._stream))

    def _keyframe(self, target: float) -> tuple[av.VideoFrame, float] | None:
        """The keyframe a seek towards ``target`` lands on, and its time: its one packet
        decoded and the decoder drained, so B-frame reordering does not hold it back
        behind the next frames (one decode per sample instead of three). None where the
        seek lands elsewhere or the packet does not decode."""
        stream = self._stream
        assert stream.time_base is not None
        if not self._seek_before(target):
            return None
        try:
            packet = next(
                (p for p in self._container.demux(stream) if p.size > 0 or p.pts is not None),
                None,
            )
            if packet is None or not packet.is_keyframe or packet.pts is None:
                return None
            decoded = list(stream.decode(packet)) + list(stream.decode(None))
        except (av.FFmpegError, ValueError):
            self._check_resized()
            return None
        self.stats.decoded += len(decoded)
        if not decoded:
            return None
        # Frames drained from the decoder carry no time base: the packet's is the stream's.
        frame = decoded[0]
        pts = frame.pts if frame.pts is not None else packet.pts
        return frame, float(pts * stream.time_base) - self._start

    def _next(self, frames: Iterator[av.VideoFrame]) -> av.VideoFrame | None:
        self._check_deadline()
        try:
            frame = next(frames, None)
        except (av.FFmpegError, ValueError):
            self._check_resized()
            # A damaged stretch: what was sampled before it stands; the rest is missing
            # (frames_analysed says how many there are).
            return None
        if frame is not None:
            self.stats.decoded += 1
        return frame

    def _check_resized(self) -> None:
        """Raise where the decoder failed because the stream switched to frames over the
        pixel limit (the codec context then holds the new size), rather than skipping them
        as a damaged stretch."""
        context = self._stream.codec_context
        self._refuse_size(context.width, context.height)

    def _refuse_size(self, width: int, height: int) -> None:
        if width * height > self.limits.max_pixels:
            raise VideoTooLargeError(
                f"the stream switches to frames of {width}x{height} after declaring "
                f"{self.info.width}x{self.info.height}; frames over the "
                f"{self.limits.max_pixels:,} pixel limit are not decoded. Send a smaller "
                "rendition."
            )

    def _time(self, frame: av.VideoFrame, previous: float) -> float:
        presented: float | None = frame.time  # None where the frame has no timestamp
        if presented is not None:
            return float(presented) - self._start
        # No timestamp: one nominal frame after the previous one.
        rate = self.info.frame_rate or 25.0
        return (previous if math.isfinite(previous) else 0.0) + 1.0 / rate

    def _upright(self, frame: av.VideoFrame) -> Image.Image:
        """RGB, turned the way players show it (the display matrix, per frame)."""
        self._refuse_size(frame.width, frame.height)  # for a decoder that ignores the cap
        try:
            image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
        except (av.FFmpegError, ValueError) as e:
            raise InvalidVideoError(
                f"a frame could not be converted to RGB ({_describe(e)}); send the video in "
                "a common pixel format (8-bit YUV 4:2:0 or 4:4:4)"
            ) from e
        rotation = round(frame.rotation / 90.0) * 90 % 360
        self.stats.rotation = rotation
        if rotation == 90:
            return image.transpose(Image.Transpose.ROTATE_90)
        if rotation == 180:
            return image.transpose(Image.Transpose.ROTATE_180)
        if rotation == 270:
            return image.transpose(Image.Transpose.ROTATE_270)
        return image


def _between(key: float, keyframes: list[float]) -> float:
    """A time after keyframe ``key`` and before the next one (at most 0.5 s after it)."""
    later = [k for k in keyframes if k > key]
    return key + min(0.5, (later[0] - key) / 2) if later else key + 0.5


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text[:200]
