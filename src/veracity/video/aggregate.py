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

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from veracity.verdicts.decision import Thresholds, VerdictLabel
from veracity.verdicts.quality import Reason
from veracity.video.contrast import Step, TemporalContrast
from veracity.video.segments import (
    USABLE_REASONS,
    FrameVerdict,
    Segment,
    SustainedRun,
    contrast_step,
    doubtful_stretch,
    find_segments,
    mean,
    step_segment,
    usable,
)

AggregationMethod = Literal["confident", "mean", "max", "top_k"]
AGGREGATION_METHODS: tuple[AggregationMethod, ...] = ("confident", "mean", "max", "top_k")


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
    contrast: TemporalContrast = field(default_factory=TemporalContrast)

    def with_method(self, method: AggregationMethod | None) -> AggregationRule:
        """This rule with a request's method (None: the deployment's)."""
        return self if method is None else replace(self, method=method)


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


def aggregate_probabilities(probabilities: Sequence[float], rule: AggregationRule) -> float:
    """The video's fake probability from its usable frames' (at least one)."""
    values = list(probabilities)
    if not values:
        raise ValueError("no probabilities to aggregate")
    if rule.method == "mean":
        return mean(values)
    if rule.method == "max":
        return max(values)
    if rule.method == "top_k":
        return mean(sorted(values, reverse=True)[: max(1, rule.top_k)])
    fakes = [p for p in values if p >= rule.confident_fake]
    if len(fakes) >= rule.fake_fraction * len(values):
        return mean(fakes)
    reals = [p for p in values if p <= rule.confident_real]
    if len(reals) >= rule.real_fraction * len(values):
        return mean(reals)
    return mean(values)


def judge_video(
    frames: Sequence[FrameVerdict],
    *,
    duration_s: float,
    thresholds: Thresholds,
    rule: AggregationRule,
    min_duration_s: float,
    shots: Sequence[range] | None = None,
) -> VideoVerdict:
    """The video's verdict from its sampled frames' (in time order). ``shots`` splits the
    frames into shots (``video.shots``); None (not known) leaves temporal contrast out."""
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
    found = (
        None if shots is None else _contrast(frames, segments, shots, duration_s, thresholds, rule)
    )
    if found is not None:
        contrasted, step = found
        # As with a sustained run: the video is as manipulated as that stretch (its mean
        # unrounded: every frame of it is above the real operating point, so the video's
        # fake_prob is too). Runs of fake frames it overlaps are part of it, not segments of
        # their own.
        stretch = [f.verdict.fake_prob for f in frames[step.first : step.last + 1]]
        fake_prob = max(fake_prob, mean(stretch))
        segments = [contrasted, *(s for s in segments if not _overlap(s, contrasted))]
        verdict, reasons = _contrasted(fake_prob, thresholds, contrasted, step)
    else:
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
            {r.code for f in frames for r in f.verdict.reasons if r.code not in USABLE_REASONS}
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


def _contrast(
    frames: Sequence[FrameVerdict],
    segments: list[Segment],
    shots: Sequence[range],
    duration_s: float,
    thresholds: Thresholds,
    rule: AggregationRule,
) -> tuple[Segment, Step] | None:
    """The temporal-contrast stretch, when it says more than the segments already found:
    with no sustained run, or around the first one (its fake frames are the peak of a longer
    stretch that stands out from its shot, and the stretch is where the edit is). A
    sustained run it does not contain (a whole clip of fake frames) stays first."""
    step = contrast_step(
        frames,
        shots,
        duration_s=duration_s,
        thresholds=thresholds,
        run=rule.run,
        contrast=rule.contrast,
    )
    if step is None:
        return None
    contrasted = step_segment(frames, step, duration_s, thresholds)
    top = segments[0] if segments and segments[0].sustained else None
    if top is not None and not (
        contrasted.start_s <= top.start_s and top.end_s <= contrasted.end_s
    ):
        return None
    return contrasted, step


def _overlap(a: Segment, b: Segment) -> bool:
    return a.start_s < b.end_s and b.start_s < a.end_s


def _contrasted(
    fake_prob: float, thresholds: Thresholds, segment: Segment, step: Step
) -> tuple[VerdictLabel, list[Reason]]:
    """A video holding a temporal-contrast run is fake; the reason says why when its
    fake_prob alone would not say so (the probability stays what the frames say: the
    contrast is evidence about the clip, not a calibrated probability)."""
    if thresholds.classify(fake_prob) == "fake":
        return "fake", []
    return "fake", [
        Reason(
            "temporal_contrast",
            f"the {segment.frames} frames between {segment.start_s:.2f} s and "
            f"{segment.end_s:.2f} s all score at least {step.step:.2f} logits above their "
            f"shot on both sides (fake_prob {segment.fake_prob:.2f} there against a median of "
            f"{step.reference:.2f} on the higher side): the same picture looks manipulated "
            f"there and not around it. fake_prob {fake_prob:.3f} is what the frames say on "
            f"their own, below the fake operating point {thresholds.fake_threshold:g}.",
        )
    ]
