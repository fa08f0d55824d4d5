"""What to sample from a video and the limits it must fit (no FFmpeg import: settings
and the API build these)."""

from __future__ import annotations

from dataclasses import dataclass

from veracity.errors import VideoTooLargeError

DEFAULT_CODECS: tuple[str, ...] = ("h264", "hevc", "vp8", "vp9", "av1")


@dataclass(frozen=True)
class VideoLimits:
    """Per-deployment limits (see Settings)."""

    max_duration_s: float = 120.0
    max_pixels: int = 8_294_400  # 3840 x 2160 per frame
    max_streams: int = 8
    max_samples: int = 128
    decode_timeout_s: float = 30.0
    min_duration_s: float = 0.1
    codecs: tuple[str, ...] = DEFAULT_CODECS


@dataclass(frozen=True)
class SamplingPlan:
    """``count`` evenly spaced frames, or one every ``every_s`` seconds (then ``count`` is
    ignored)."""

    count: int = 32
    every_s: float | None = None

    def targets(self, start: float, duration: float, limits: VideoLimits) -> list[float]:
        """Target times in seconds: the centres of ``count`` equal intervals, or every
        ``every_s`` seconds from half an interval in."""
        if self.every_s is not None:
            if self.every_s <= 0:
                raise ValueError("every_s must be > 0")
            count = max(1, int(duration / self.every_s))
            if count > limits.max_samples:
                raise VideoTooLargeError(
                    f"one frame every {self.every_s:g} s of a {duration:.1f} s video is "
                    f"{count} frames; at most {limits.max_samples} are analysed per video. "
                    f"Sample less often (every >= {duration / limits.max_samples:.2f} s)."
                )
            spacing = self.every_s
        else:
            if not 1 <= self.count <= limits.max_samples:
                raise VideoTooLargeError(
                    f"{self.count} frames requested; between 1 and {limits.max_samples} "
                    "are analysed per video"
                )
            count = self.count
            spacing = duration / count
        return [start + spacing * (i + 0.5) for i in range(count)]
