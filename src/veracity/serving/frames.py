"""A video's path through a runner: frames sampled, scored in the shared batches, judged.

Frames decode one at a time in a video thread and join the shared micro-batches as bulk
items (single images go first). The next frame decodes while the earlier ones are in the
model, but at most ``window`` frames (a batch's worth) are held at once, each from the start
of its decode until its score returns: memory stays bounded whatever the file, and the
decoder never runs further ahead of the model than that (tests/video/test_frame_window.py).
A forward pass takes the frames waiting when it starts. The frame verdicts are aggregated
into the video's verdict.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from veracity.inference.predictor import Prediction, Predictor, PreparedImage
from veracity.metrics import ServiceMetrics
from veracity.serving.batcher import Pending
from veracity.serving.pools import close_in, run_in
from veracity.video.aggregate import AggregationRule
from veracity.video.analysis import FrameSource, VideoAnalysis
from veracity.video.plan import SamplingPlan, VideoLimits
from veracity.video.segments import FrameVerdict

Score = Callable[[Sequence[torch.Tensor]], Awaitable[list[Prediction]]]


class VideoScoring:
    """Analyses videos with one version's predictor.

    Args:
        score: Predicts a frame's inputs as bulk items of the version's batches.
        window: Frames held at most, from the start of their decode until their scores
            return: being decoded, waiting for a forward pass or in one (a batch's worth).
        pending: Where a frame being decoded is counted, so a batch waits for it.
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        pool: ThreadPoolExecutor,
        score: Score,
        window: int,
        pending: Pending,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._predictor = predictor
        self._pool = pool
        self._score = score
        self._window = window
        self._pending = pending
        self._metrics = metrics

    async def analyse(
        self, data: bytes, plan: SamplingPlan, rule: AggregationRule, limits: VideoLimits
    ) -> VideoAnalysis:
        from veracity.video.sampling import VideoReader  # imports FFmpeg

        predictor = self._predictor
        started = time.perf_counter()
        pool = self._pool
        reader = await run_in(pool, lambda: VideoReader(data, limits))
        source = FrameSource(predictor, reader, plan, limits, started=started)
        window = asyncio.Semaphore(self._window)

        async def score(timestamp: float, prepared: PreparedImage) -> FrameVerdict:
            try:
                predictions = await self._score(prepared.inputs)
            finally:
                window.release()
            return FrameVerdict(timestamp, predictor.judge_prepared(prepared, predictions)[1])

        tasks: list[asyncio.Future[FrameVerdict]] = []
        try:
            while True:
                # Taken before the decode, not after it: a frame being decoded is in memory
                # too, so the frames held never exceed the window.
                await window.acquire()
                with self._pending.preparing():
                    item = await run_in(pool, source.next)
                if item is None:
                    window.release()
                    break
                tasks.append(asyncio.ensure_future(score(*item)))
            judged = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        finally:
            # A cancelled request's last step may still be decoding in a video thread (its
            # awaiting future reports done at once): close() waits for it, in a video thread
            # so that the event loop does not.
            close_in(pool, reader.close)
        # Off the event loop: the contrast search grows with the square of the frames.
        analysis = await run_in(pool, lambda: source.conclude(judged, rule))
        self._count(analysis, len(judged), source.decode_s)
        return analysis

    def _count(self, analysis: VideoAnalysis, frames: int, decode_s: float) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        metrics.videos.labels(analysis.verdict.verdict).inc()
        metrics.video_frames.observe(frames)
        metrics.video_decode_seconds.observe(decode_s)
        for reason in analysis.verdict.reasons:
            metrics.reasons.labels(reason.code).inc()
