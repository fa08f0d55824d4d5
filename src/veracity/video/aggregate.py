"""One verdict for a video from its frames' verdicts, and a timeline of suspicious segments.

Frames that a gate made inconclusive (out of distribution, too small, uniform) carry no
usable probability and are left out; frames that are inconclusive only because their
probability lies between the operating points are kept (the probability is meaningful).
If more than ``max_inconclusive_fraction`` of the frames are left out, the video is
``inconclusive`` / ``too_many_inconclusive_frames``, whatever its frames show: when most
frames are unlike the model's training data, the rest are suspect too.

Aggregation of the kept frames' calibrated ``fake_prob`` (``method``):

- ``confident`` (default; the DFDC-winning rule): if at least ``fake_fraction`` of the
  frames are confidently fake (``>= confident_fake``), the mean of those; else if at least
  ``real_fraction`` are confidently real (``<= confident_real``), the mean of those; else
  the mean of all. A few confident frames decide, without being diluted by the rest.
- ``mean``; ``max`` (the most suspicious frame); ``top_k`` (mean of the ``top_k`` most
  suspicious frames).

Segments. A frame is *fake* when it is usable and its ``fake_prob`` is at or above the fake
operating point. Fake frames are joined into one segment when at most ``run.max_gap``
sampled frames lie between them (a frame the model missed, or a gated one, does not cut an
edit in two); a segment needs ``min_segment_frames`` fake frames. It covers the time its
frames stand for, from halfway to the sample before it to halfway to the one after (the
video's start and end at the edges); its ``fake_prob`` is the mean over its usable frames,
gap frames included.

The sustained-run rule (``run``, every ``method``). A segment is *sustained* when it holds
at least ``run.min_frames`` fake frames, covers at least ``run.min_duration_s`` seconds, and
its mean ``fake_prob`` is itself at or above the fake operating point. A video is as
manipulated as its most manipulated stretch, so its ``fake_prob`` is the larger of the
method's aggregate and the sustained segment's mean: a sustained run makes it ``fake``, and
that run is the first of ``segments``. Why these defaults (3 frames, 1 s, a gap of 1):

- One fake frame is a glitch as often as an edit: a cut, motion blur, a damaged keyframe.
  Two adjacent samples can show the same glitch. Three is the first run in which a frame's
  neighbours on both sides agree with it. If real frames were called fake independently
  at a rate ``p``, a 32-frame clip would hold such a run (gap 1 allowed) by chance in
  about 0.08% of clips at ``p`` = 0.02 and 1.2% at 0.05 (two frames: 2.3% and 13%);
  the mean condition (a missed real frame drags a short run under the operating point)
  brings that to about 0.03% and 0.4-0.6%, close to runs without gaps. A model whose
  frames err more often needs a longer run (``VERACITY_VIDEO_RUN_MIN_FRAMES``).
- Dense samples of one moment are one observation, not several: at 30 samples a second a
  three-frame run is a tenth of a second, shorter than a cross-fade. One second is
  about the shortest manipulation that changes what a clip says (a spoken phrase), and
  twice a usual cross-fade.
- One missed frame inside an edit (a face turned away, a blurred frame) should not split
  it; two in a row mean the evidence stopped.

A video whose frames hold a segment that is not sustained is never called ``real``:
where the verdict is not fake but a segment exists, it is ``inconclusive`` with
``suspicious_segments`` pointing at the timeline. Nor is one that holds a sustained run
(the same frame count, duration and gap) of frames that are merely not confidently real
(``fake_prob`` above the real operating point): an edit the model scores 0.5-0.7 frame
after frame would otherwise vanish into a clip-wide mean under the real threshold. It is
``inconclusive`` with ``doubtful_stretch`` naming the stretch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from veracity.errors import ConfigurationError
from veracity.verdicts.decision import Thresholds, Verdict, VerdictLabel
from veracity.verdicts.quality import Reason

AggregationMethod = Literal["confident", "mean", "max", "top_k"]
AGGREGATION_METHODS: tuple[AggregationMethod, ...] = ("confident", "mean", "max", "top_k")

# Reasons that leave a frame's probability meaningful; any other reason excludes it.
_USABLE_REASONS = {"near_threshold"}
# Segment bounds are rounded to the millisecond; a run that covers exactly the minimum
# must not fall short by the rounding.
_DURATION_TOLERANCE_S = 1e-6


@dataclass(frozen=True)
class SustainedRun:
    """When a stretch of fake frames makes the whole video fake (the module docstring)."""

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
    run: SustainedRun = field(default_factory=SustainedRun)

    def with_method(self, method: AggregationMethod | None) -> AggregationRule:
        """This rule with a request's method (None: the deployment's)."""
        return self if method is None else replace(self, method=method)


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

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


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
    frames: Sequence[FrameVerdict], duration_s: float, thresholds: Thresholds, rule: AggregationRule
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
        segment = _segment(frames, indices, duration_s, thresholds, run)
        long_enough = segment.end_s - segment.start_s >= run.min_duration_s - _DURATION_TOLERANCE_S
        if len(indices) >= run.min_frames and long_enough:
            found.append(segment)
    return max(found, key=lambda s: (s.fake_frames, s.fake_prob), default=None)


def _is_fake(verdict: Verdict, thresholds: Thresholds) -> bool:
    return verdict.verdict == "fake" or (
        usable(verdict) and verdict.fake_prob >= thresholds.fake_threshold
    )


def _segment(
    frames: Sequence[FrameVerdict],
    run: list[int],
    duration_s: float,
    thresholds: Thresholds,
    sustained_run: SustainedRun,
) -> Segment:
    first, last = run[0], run[-1]
    start = (frames[first - 1].timestamp_s + frames[first].timestamp_s) / 2 if first > 0 else 0.0
    end = (
        (frames[last].timestamp_s + frames[last + 1].timestamp_s) / 2
        if last + 1 < len(frames)
        else duration_s
    )
    start, end = round(start, 3), round(max(end, start), 3)
    # Gated gap frames carry no probability; the fake frames always do.
    probabilities = [f.verdict.fake_prob for f in frames[first : last + 1] if usable(f.verdict)]
    fake_prob = round(_mean(probabilities), 4)
    return Segment(
        start_s=start,
        end_s=end,
        frames=last - first + 1,
        fake_prob=fake_prob,
        peak_fake_prob=round(max(probabilities), 4),
        fake_frames=len(run),
        sustained=len(run) >= sustained_run.min_frames
        and end - start >= sustained_run.min_duration_s - _DURATION_TOLERANCE_S
        and fake_prob >= thresholds.fake_threshold,
    )


def judge_video(
    frames: Sequence[FrameVerdict],
    *,
    duration_s: float,
    thresholds: Thresholds,
    rule: AggregationRule,
    min_duration_s: float,
) -> VideoVerdict:
    segments = find_segments(frames, duration_s, thresholds, rule)
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
    if segments and segments[0].sustained:
        fake_prob = max(fake_prob, segments[0].fake_prob)
    verdict, reasons = _classify(fake_prob, thresholds, segments, rule.run)
    doubt = doubtful_stretch(frames, duration_s, thresholds, rule.run)
    if verdict == "real" and doubt is not None:
        verdict = "inconclusive"
        reasons.append(
            Reason(
                "doubtful_stretch",
                f"the video as a whole looks real, but {doubt.fake_frames} frames between "
                f"{doubt.start_s:.2f} s and {doubt.end_s:.2f} s are not confidently real "
                f"(fake_prob above {thresholds.real_threshold:g}, mean {doubt.fake_prob:.2f}); "
                "a real answer would hide them. Review that stretch.",
            )
        )
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
    fake_prob: float, thresholds: Thresholds, segments: list[Segment], run: SustainedRun
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
                f"the video as a whole is not judged fake, but {top.fake_frames} of the "
                f"{top.frames} frames between {top.start_s:.2f} s and {top.end_s:.2f} s look "
                f"manipulated (fake_prob {top.fake_prob:.2f}); a sustained run (at least "
                f"{run.min_frames} such frames over {run.min_duration_s:g} s, mean at least "
                f"{thresholds.fake_threshold:g}) would make it fake. Review the timeline.",
            )
        )
    return verdict, reasons


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
