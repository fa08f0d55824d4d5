"""A video's analysis: what the service answers and ``veracity predict`` prints.

The service scores frames through its shared micro-batcher (veracity.serving.service);
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

import numpy as np

from veracity.verdicts.quality import measure
from veracity.video.aggregate import AggregationRule, VideoVerdict, judge_video
from veracity.video.plan import SamplingPlan, VideoLimits
from veracity.video.segments import FrameVerdict
from veracity.video.shots import ShotRule, shots, signature

if TYPE_CHECKING:
    from veracity.inference.predictor import Predictor, PreparedImage
    from veracity.video.container import VideoInfo
    from veracity.video.sampling import VideoReader


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


class FrameSource:
    """An open video's sampled frames, prepared for the model one at a time, and the
    verdict once they are judged: what the service and the CLI share."""

    def __init__(
        self,
        predictor: Predictor,
        reader: VideoReader,
        plan: SamplingPlan,
        limits: VideoLimits,
        *,
        started: float,  # perf_counter() when the request began (total_ms counts from it)
    ) -> None:
        self.predictor = predictor
        self.reader = reader
        self.limits = limits
        self.decode_s = 0.0  # seeking, decoding and preprocessing
        self.started = started
        self._frames = reader.sample(plan)
        # One per frame handed out, in order: where the shots change (temporal contrast).
        self._signatures: list[np.ndarray] = []

    def next(self) -> PreparedFrame | None:
        """The next sampled frame as model inputs (None: no more). Blocking: call it off
        the event loop."""
        t0 = time.perf_counter()
        try:
            with self.reader.stepping() as open_:
                frame = next(self._frames, None) if open_ else None
            if frame is None:
                return None
            # No JPEG table: a video frame's compression is the codec's, not a JPEG's.
            self._signatures.append(signature(frame.image))
            quality = measure(frame.image, None)
            prepared = self.predictor.prepare_decoded(frame.image, quality, robustness_check=False)
            return frame.timestamp_s, prepared
        finally:
            self.decode_s += time.perf_counter() - t0

    def shots(self) -> list[range]:
        """The frames handed out so far, split into shots (``video.shots``)."""
        return shots(self._signatures, ShotRule())

    def conclude(self, judged: list[FrameVerdict], rule: AggregationRule) -> VideoAnalysis:
        """The video's verdict from its frames' (in time order)."""
        info = self.reader.info
        # Every frame handed out is judged, in order; anything else leaves the shots unknown.
        cuts = self.shots() if len(self._signatures) == len(judged) else None
        verdict = judge_video(
            judged,
            duration_s=info.duration_s,
            thresholds=self.predictor.policy.thresholds,
            rule=rule,
            min_duration_s=self.limits.min_duration_s,
            shots=cuts,
        )
        return VideoAnalysis(
            verdict=verdict,
            frames=judged,
            info=info,
            rotation=self.reader.stats.rotation,
            decoded_frames=self.reader.stats.decoded,
            decode_ms=round(self.decode_s * 1000, 3),
            total_ms=round((time.perf_counter() - self.started) * 1000, 3),
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
    judged: list[FrameVerdict] = []
    with VideoReader(source, limits) as reader:
        planned = len(plan.targets(0.0, reader.info.duration_s, limits))
        source_frames = FrameSource(predictor, reader, plan, limits, started=started)
        pending: list[PreparedFrame] = []

        def flush() -> None:
            judged_now = predictor.predict_prepared([prepared for _, prepared in pending])
            for (timestamp, _), (_, verdict) in zip(pending, judged_now, strict=True):
                judged.append(FrameVerdict(timestamp, verdict))
            pending.clear()
            if on_frame is not None:
                on_frame(len(judged), planned)

        while (item := source_frames.next()) is not None:
            pending.append(item)
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
    return source_frames.conclude(judged, rule)
