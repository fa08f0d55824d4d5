"""A video's analysis: what the service answers and ``veracity predict`` prints.

The service scores frames through its shared micro-batcher (veracity.inference.service);
``analyse_video`` is the same pipeline for one process with the model to itself (the CLI):
frames are decoded one at a time and scored ``batch_size`` at a time, so memory stays
bounded whatever the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.verdicts.quality import measure
from veracity.video.aggregate import AggregationRule, FrameVerdict, VideoVerdict, judge_video
from veracity.video.plan import SamplingPlan, VideoLimits

if TYPE_CHECKING:
    from veracity.inference.predictor import Predictor, PreparedImage
    from veracity.video.sampling import SampledFrame, VideoInfo


@dataclass(frozen=True)
class VideoAnalysis:
    verdict: VideoVerdict
    frames: list[FrameVerdict]
    info: VideoInfo
    rotation: int
    decoded_frames: int
    decode_ms: float  # seeking, decoding and preprocessing the sampled frames
    total_ms: float


PreparedFrame = tuple[float, "PreparedImage"]  # timestamp, the model's inputs


def prepare_frame(predictor: Predictor, frame: SampledFrame) -> PreparedFrame:
    """A decoded frame -> the model's inputs and the quality measurements (no JPEG table:
    a video frame's compression is the codec's, not a JPEG's)."""
    quality = measure(frame.image, None)
    return frame.timestamp_s, predictor.prepare_decoded(
        frame.image, quality, robustness_check=False
    )


def analyse_video(
    predictor: Predictor,
    source: bytes | Path,
    *,
    plan: SamplingPlan,
    rule: AggregationRule,
    limits: VideoLimits,
    batch_size: int = 8,
    on_frame: Callable[[int, int], None] | None = None,
) -> VideoAnalysis:
    """Sample, score and judge a video in this thread. ``on_frame(done, planned)`` is
    called after each scored batch (a progress bar)."""
    from veracity.video.sampling import VideoReader  # imports FFmpeg

    started = time.perf_counter()
    decode_s = 0.0
    judged: list[FrameVerdict] = []
    with VideoReader(source, limits) as reader:
        planned = len(plan.targets(0.0, reader.info.duration_s, limits))
        pending: list[PreparedFrame] = []

        def flush() -> None:
            judged_now = predictor.predict_prepared([prepared for _, prepared in pending])
            for (timestamp, _), (_, verdict) in zip(pending, judged_now, strict=True):
                judged.append(FrameVerdict(timestamp, verdict))
            pending.clear()
            if on_frame is not None:
                on_frame(len(judged), planned)

        frames = reader.sample(plan)
        while True:
            t0 = time.perf_counter()
            frame = next(frames, None)
            item = None if frame is None else prepare_frame(predictor, frame)
            decode_s += time.perf_counter() - t0
            if item is None:
                break
            pending.append(item)
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
        info = reader.info
        rotation, decoded = reader.stats.rotation, reader.stats.decoded
    verdict = judge_video(
        judged,
        duration_s=info.duration_s,
        thresholds=predictor.policy.thresholds,
        rule=rule,
        min_duration_s=limits.min_duration_s,
    )
    return VideoAnalysis(
        verdict=verdict,
        frames=judged,
        info=info,
        rotation=rotation,
        decoded_frames=decoded,
        decode_ms=round(decode_s * 1000, 3),
        total_ms=round((time.perf_counter() - started) * 1000, 3),
    )
