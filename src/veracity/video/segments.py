"""A video's timeline: runs of fake frames joined into segments, the stretches that are not
confidently real, and the segment of a temporal-contrast run (``aggregate`` decides what
they make of the video; its docstring says why the rules are what they are)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from veracity.errors import ConfigurationError
from veracity.verdicts.decision import Thresholds, Verdict
from veracity.video.contrast import Step, TemporalContrast, find_step


class SegmentRule(Protocol):
    """What ``find_segments`` reads of an ``AggregationRule``."""

    @property
    def min_segment_frames(self) -> int: ...

    @property
    def run(self) -> SustainedRun: ...


# Reasons that leave a frame's probability meaningful; any other reason excludes it.
USABLE_REASONS = {"near_threshold"}
# Segment bounds are rounded to the millisecond; a run that covers exactly the minimum
# must not fall short by the rounding.
_DURATION_TOLERANCE_S = 1e-6


@dataclass(frozen=True)
class SustainedRun:
    """When a stretch of fake frames makes the whole video fake (why these defaults:
    ``veracity.video.aggregate``'s docstring)."""

    min_frames: int = 3  # fake frames in the segment
    min_duration_s: float = 1.0  # time the segment covers
    max_gap: int = 1  # frames in a row between two fake frames of one segment

    def __post_init__(self) -> None:
        # A single frame must never decide a video, whatever the deployment sets.
        duration_ok = math.isfinite(self.min_duration_s) and self.min_duration_s >= 0
        if self.min_frames < 2 or not duration_ok or self.max_gap < 0:
            raise ConfigurationError(
                "a sustained run needs min_frames >= 2, a finite min_duration_s >= 0 and "
                "max_gap >= 0, "
                f"got {self.min_frames}, {self.min_duration_s} and {self.max_gap}"
            )


@dataclass(frozen=True)
class FrameVerdict:
    timestamp_s: float
    verdict: Verdict


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    frames: int  # sampled frames from its first fake frame to its last, gaps included
    fake_prob: float  # mean over the segment's usable frames
    peak_fake_prob: float
    fake_frames: int  # frames at or above the fake operating point
    sustained: bool  # enough by itself to make the video fake
    # Temporal contrast: its lowest logit above the higher of its shot's medians before and
    # after it (None: a run of fake frames, not found by contrast).
    step: float | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def usable(verdict: Verdict) -> bool:
    return all(reason.code in USABLE_REASONS for reason in verdict.reasons)


def find_segments(
    frames: Sequence[FrameVerdict], duration_s: float, thresholds: Thresholds, rule: SegmentRule
) -> list[Segment]:
    """Runs of fake sampled frames (at most ``rule.run.max_gap`` others in a row between
    two of them), sustained ones first, then the most suspicious."""
    runs = _runs([_is_fake(f.verdict, thresholds) for f in frames], rule.run.max_gap)
    segments = [
        _segment(frames, run, duration_s, thresholds, rule.run)
        for run in runs
        if len(run) >= rule.min_segment_frames
    ]
    segments.sort(key=lambda s: (not s.sustained, -s.fake_prob, -s.frames, s.start_s))
    return segments


def _runs(marked: Sequence[bool], max_gap: int) -> list[list[int]]:
    """Indices of the marked frames, joined into runs across at most ``max_gap`` others."""
    runs: list[list[int]] = []
    for i, flag in enumerate(marked):
        if not flag:
            continue
        if runs and i - runs[-1][-1] - 1 <= max_gap:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def doubtful_stretch(
    frames: Sequence[FrameVerdict], duration_s: float, thresholds: Thresholds, run: SustainedRun
) -> Segment | None:
    """The longest sustained run of usable frames that are not confidently real (above the
    real operating point), if any: a clip holding one is never called ``real``."""
    marked = [usable(f.verdict) and f.verdict.fake_prob > thresholds.real_threshold for f in frames]
    found = []
    for indices in _runs(marked, run.max_gap):
        if _long_enough(frames, indices[0], indices[-1], len(indices), duration_s, run):
            found.append(_segment(frames, indices, duration_s, thresholds, run))
    return max(found, key=lambda s: (s.fake_frames, s.fake_prob), default=None)


def _is_fake(verdict: Verdict, thresholds: Thresholds) -> bool:
    return verdict.verdict == "fake" or (
        usable(verdict) and verdict.fake_prob >= thresholds.fake_threshold
    )


def _bounds(
    frames: Sequence[FrameVerdict], first: int, last: int, duration_s: float
) -> tuple[float, float]:
    """The time frames ``first``..``last`` stand for: from halfway to the sample before
    to halfway to the one after (the video's start and end at the edges)."""
    start = (frames[first - 1].timestamp_s + frames[first].timestamp_s) / 2 if first > 0 else 0.0
    end = (
        (frames[last].timestamp_s + frames[last + 1].timestamp_s) / 2
        if last + 1 < len(frames)
        else duration_s
    )
    return round(start, 3), round(max(end, start), 3)


def _long_enough(
    frames: Sequence[FrameVerdict],
    first: int,
    last: int,
    count: int,
    duration_s: float,
    rule: SustainedRun,
) -> bool:
    """Whether ``count`` frames from ``first`` to ``last`` are a sustained run's worth."""
    start, end = _bounds(frames, first, last, duration_s)
    covered = end - start >= rule.min_duration_s - _DURATION_TOLERANCE_S
    return count >= rule.min_frames and covered


def _segment(
    frames: Sequence[FrameVerdict],
    run: list[int],
    duration_s: float,
    thresholds: Thresholds,
    sustained_run: SustainedRun,
) -> Segment:
    first, last = run[0], run[-1]
    start, end = _bounds(frames, first, last, duration_s)
    # Gated gap frames carry no probability; the fake frames always do.
    probabilities = [f.verdict.fake_prob for f in frames[first : last + 1] if usable(f.verdict)]
    fake_prob = round(mean(probabilities), 4)
    return Segment(
        start_s=start,
        end_s=end,
        frames=last - first + 1,
        fake_prob=fake_prob,
        peak_fake_prob=round(max(probabilities), 4),
        fake_frames=len(run),
        sustained=_long_enough(frames, first, last, len(run), duration_s, sustained_run)
        and fake_prob >= thresholds.fake_threshold,
    )


def step_segment(
    frames: Sequence[FrameVerdict], step: Step, duration_s: float, thresholds: Thresholds
) -> Segment:
    """The segment of a temporal-contrast run: all its frames are usable."""
    start, end = _bounds(frames, step.first, step.last, duration_s)
    inside = frames[step.first : step.last + 1]
    probabilities = [f.verdict.fake_prob for f in inside]
    return Segment(
        start_s=start,
        end_s=end,
        frames=len(probabilities),
        fake_prob=round(mean(probabilities), 4),
        peak_fake_prob=round(max(probabilities), 4),
        fake_frames=sum(_is_fake(f.verdict, thresholds) for f in inside),
        sustained=True,
        step=step.step,
    )


def contrast_step(
    frames: Sequence[FrameVerdict],
    shots: Sequence[range],
    *,
    duration_s: float,
    thresholds: Thresholds,
    run: SustainedRun,
    contrast: TemporalContrast,
) -> Step | None:
    """The temporal-contrast run that makes the video fake, if any (``video.contrast``)."""
    return find_step(
        [f.verdict.fake_prob if usable(f.verdict) else None for f in frames],
        shots,
        real_threshold=thresholds.real_threshold,
        # A contrast run has no gaps: its frames are every frame from a to b.
        long_enough=lambda a, b: _long_enough(frames, a, b, b - a + 1, duration_s, run),
        contrast=contrast,
    )


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
