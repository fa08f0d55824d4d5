"""One verdict for a video from its frames' verdicts, and a timeline of suspicious segments.

Frames that a gate made inconclusive (out of distribution, too small, uniform) carry no
usable probability and are left out; frames that are inconclusive only because their
probability lies between the operating points are kept (the probability is meaningful).
If more than ``max_inconclusive_fraction`` of the frames are left out, the video is
``inconclusive`` / ``too_many_inconclusive_frames``.

Aggregation of the kept frames' calibrated ``fake_prob`` (``method``):

- ``confident`` (default; the DFDC-winning rule): if at least ``fake_fraction`` of the
  frames are confidently fake (``>= confident_fake``), the mean of those; else if at least
  ``real_fraction`` are confidently real (``<= confident_real``), the mean of those; else
  the mean of all. A few confident frames decide, without being diluted by the rest.
- ``mean``; ``max`` (the most suspicious frame); ``top_k`` (mean of the ``top_k`` most
  suspicious frames).

The video's verdict applies the deployment's operating points to that probability. A
video whose frames hold a manipulated stretch is never called ``real``: where the
aggregate is not fake but a segment of at least ``min_segment_frames`` consecutive fake
frames exists, the verdict is ``inconclusive`` with ``suspicious_segments`` pointing at
the timeline (a partly manipulated clip is exactly what the confident rule, built for
whole-video face swaps, averages away).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from veracity.verdicts.decision import Thresholds, Verdict, VerdictLabel
from veracity.verdicts.quality import Reason

AggregationMethod = Literal["confident", "mean", "max", "top_k"]
AGGREGATION_METHODS: tuple[AggregationMethod, ...] = ("confident", "mean", "max", "top_k")

# Reasons that leave a frame's probability meaningful; any other reason excludes it.
_USABLE_REASONS = {"near_threshold"}


@dataclass(frozen=True)
class AggregationRule:
    method: AggregationMethod = "confident"
    confident_fake: float = 0.8
    confident_real: float = 0.2
    fake_fraction: float = 0.4  # the DFDC winner's n / 2.5
    real_fraction: float = 0.9
    top_k: int = 3
    max_inconclusive_fraction: float = 0.5
    min_frames: int = 2
    min_segment_frames: int = 2


@dataclass(frozen=True)
class FrameVerdict:
    timestamp_s: float
    verdict: Verdict


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    frames: int
    fake_prob: float  # mean over the segment's frames
    peak_fake_prob: float


@dataclass(frozen=True)
class VideoVerdict:
    fake_prob: float | None  # None: no usable frame
    verdict: VerdictLabel
    reasons: tuple[Reason, ...]
    method: AggregationMethod
    frames_analysed: int
    frames_used: int  # frames whose probability entered the aggregate
    segments: tuple[Segment, ...]

    @property
    def real_prob(self) -> float | None:
        return None if self.fake_prob is None else 1.0 - self.fake_prob


def usable(verdict: Verdict) -> bool:
    return all(reason.code in _USABLE_REASONS for reason in verdict.reasons)


def aggregate_probabilities(probabilities: Sequence[float], rule: AggregationRule) -> float:
    """The video's fake probability from its usable frames' (at least one)."""
    values = list(probabilities)
    if not values:
        raise ValueError("no probabilities to aggregate")
    if rule.method == "mean":
        return _mean(values)
    if rule.method == "max":
        return max(values)
    if rule.method == "top_k":
        return _mean(sorted(values, reverse=True)[: max(1, rule.top_k)])
    fakes = [p for p in values if p >= rule.confident_fake]
    if len(fakes) >= rule.fake_fraction * len(values):
        return _mean(fakes)
    reals = [p for p in values if p <= rule.confident_real]
    if len(reals) >= rule.real_fraction * len(values):
        return _mean(reals)
    return _mean(values)


def find_segments(
    frames: Sequence[FrameVerdict], duration_s: float, thresholds: Thresholds, min_frames: int
) -> list[Segment]:
    """Runs of consecutive sampled frames judged fake, most suspicious first.

    A segment covers the time its frames stand for: from halfway to the previous sample
    to halfway to the next one (the video's start and end at the edges).
    """
    runs: list[list[int]] = []
    current: list[int] = []
    for i, frame in enumerate(frames):
        if frame.verdict.verdict == "fake" or (
            usable(frame.verdict) and frame.verdict.fake_prob >= thresholds.fake_threshold
        ):
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    segments = []
    for run in runs:
        if len(run) < min_frames:
            continue
        first, last = run[0], run[-1]
        start = (
            (frames[first - 1].timestamp_s + frames[first].timestamp_s) / 2 if first > 0 else 0.0
        )
        end = (
            (frames[last].timestamp_s + frames[last + 1].timestamp_s) / 2
            if last + 1 < len(frames)
            else duration_s
        )
        probabilities = [frames[i].verdict.fake_prob for i in run]
        segments.append(
            Segment(
                start_s=round(start, 3),
                end_s=round(max(end, start), 3),
                frames=len(run),
                fake_prob=round(_mean(probabilities), 4),
                peak_fake_prob=round(max(probabilities), 4),
            )
        )
    segments.sort(key=lambda s: (-s.fake_prob, -s.frames, s.start_s))
    return segments


def judge_video(
    frames: Sequence[FrameVerdict],
    *,
    duration_s: float,
    thresholds: Thresholds,
    rule: AggregationRule,
    min_duration_s: float,
) -> VideoVerdict:
    segments = find_segments(frames, duration_s, thresholds, rule.min_segment_frames)
    used = [f.verdict.fake_prob for f in frames if usable(f.verdict)]
    abstention = _abstention(
        frames, used, duration_s=duration_s, rule=rule, min_duration_s=min_duration_s
    )
    if abstention is not None:
        reason, abstained_prob = abstention
        return VideoVerdict(
            fake_prob=abstained_prob,
            verdict="inconclusive",
            reasons=(reason,),
            method=rule.method,
            frames_analysed=len(frames),
            frames_used=len(used),
            segments=tuple(segments),
        )
    fake_prob = aggregate_probabilities(used, rule)
    verdict, reasons = _classify(fake_prob, thresholds, segments)
    return VideoVerdict(
        fake_prob=fake_prob,
        verdict=verdict,
        reasons=tuple(reasons),
        method=rule.method,
        frames_analysed=len(frames),
        frames_used=len(used),
        segments=tuple(segments),
    )


def _abstention(
    frames: Sequence[FrameVerdict],
    used: list[float],
    *,
    duration_s: float,
    rule: AggregationRule,
    min_duration_s: float,
) -> tuple[Reason, float | None] | None:
    """Why the video cannot be judged (and the probability it is then answered with), or
    None when it can."""
    if not frames:
        return Reason("no_frames", "no frame could be decoded from the video stream."), None
    if duration_s < min_duration_s or len(frames) < rule.min_frames:
        return Reason(
            "too_short",
            f"the video lasts {duration_s:.2f} s and gave {len(frames)} frame(s); at "
            f"least {min_duration_s:g} s and {rule.min_frames} frames are needed.",
        ), None
    excluded = len(frames) - len(used)
    if all(f.verdict.faces == 0 for f in frames):
        return Reason(
            "no_face",
            f"no face was found in any of the {len(frames)} frames analysed; this model "
            "judges faces.",
        ), None
    if not used or excluded > rule.max_inconclusive_fraction * len(frames):
        codes = sorted(
            {r.code for f in frames for r in f.verdict.reasons if r.code not in _USABLE_REASONS}
        )
        return Reason(
            "too_many_inconclusive_frames",
            f"{excluded} of {len(frames)} frames could not be judged "
            f"({', '.join(codes)}); more than "
            f"{rule.max_inconclusive_fraction:.0%} is too many to judge the video.",
        ), round(aggregate_probabilities(used, rule), 6) if used else None
    return None


def _classify(
    fake_prob: float, thresholds: Thresholds, segments: list[Segment]
) -> tuple[VerdictLabel, list[Reason]]:
    verdict = thresholds.classify(fake_prob)
    reasons: list[Reason] = []
    if verdict == "inconclusive":
        reasons.append(
            Reason(
                "near_threshold",
                f"the video's fake_prob {fake_prob:.3f} lies between the operating points "
                f"{thresholds.real_threshold:g} (real) and {thresholds.fake_threshold:g} "
                "(fake).",
            )
        )
    if verdict != "fake" and segments:
        top = segments[0]
        verdict = "inconclusive"
        reasons.append(
            Reason(
                "suspicious_segments",
                f"the video as a whole is not judged fake, but {top.frames} consecutive "
                "frames between "
                f"{top.start_s:.2f} s and {top.end_s:.2f} s look manipulated "
                f"(fake_prob {top.fake_prob:.2f}); review the timeline.",
            )
        )
    return verdict, reasons


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
