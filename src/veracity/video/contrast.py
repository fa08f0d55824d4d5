"""The temporal-contrast rule: a stretch of a shot whose frames all score well above the rest
of the same shot is manipulated, even when no frame is confidently fake on its own.

Why. A frame's ``fake_prob`` is judged against every photograph the model has seen, and how
high a real photograph scores varies from picture to picture more than an edit moves it (on
the validate split, an edited copy scores above its own original in 78% of pairs, while
real and edited photographs of different pictures separate at a ROC-AUC of only 0.70). A
clip is better placed than a photograph: the frames of one shot before and after an edit
show the same picture unedited, so they are the reference the photograph lacks. The rule
compares a stretch with them, on the logit scale of the calibrated ``fake_prob`` (a step
of 1 is the same evidence at 0.3 as at 0.7).

The *step* of a run of consecutive sampled frames is its lowest logit minus the higher of
two medians: the logits of its shot's usable frames before it and after it. The lowest, not
the mean: every frame of the run must stand out, so one odd frame cannot carry a run. Both
sides: an edit between two timestamps has the unedited picture on each side, while a score
that drifts upwards towards the end of a shot (a pan reaching a different part of the
picture, a codec's rate control) has no lower side after it. A run counts when

- it lies inside one shot (``veracity.video.shots``: never compared across a cut);
- each of its frames is usable (no gate left it out) and not confidently real (above the
  real operating point: a stretch the model calls real is not evidence of an edit, however
  far above an even more real-looking rest);
- it holds at least the sustained-run rule's frames over its duration (3 frames, 1 s by
  default: one glitch, or two samples of one moment, is not an edit);
- it is at most ``max_share`` of its shot's usable frames (the unedited picture is the
  larger part) and has at least ``min_side`` usable frames of its shot on each side.

If a run's step is at least ``min_step``, the clip is ``fake`` with reason
``temporal_contrast``, and of the runs that reach it the longest is its first segment (the
whole stretch, not only its most distinct frames). Why a ``min_step`` of 1.0: README,
"Video". On the validate split's clips (the held-out sources never seen), real clips'
largest steps were at most 0.41 (48 clips), and the default is the larger of 1.0 and twice
that, fixed before any held-out clip was judged with it; visible edits stood 1.1-3.4 above
their shot.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from veracity.errors import ConfigurationError

# Probabilities are clipped before the logit: a frame at exactly 0 or 1 (a saturated model)
# must not make an infinite step.
_EPSILON = 1e-4


@dataclass(frozen=True)
class TemporalContrast:
    """When a stretch standing out from its own shot makes a video fake (the module
    docstring). ``min_step`` 0 turns the rule off."""

    min_step: float = 1.0  # logits
    max_share: float = 0.5
    min_side: int = 3

    def __post_init__(self) -> None:
        share_ok = 0.0 < self.max_share <= 0.5
        if not (math.isfinite(self.min_step) and self.min_step >= 0) or not share_ok:
            raise ConfigurationError(
                "temporal contrast needs a finite min_step >= 0 (0: off) and 0 < max_share "
                f"<= 0.5, got {self.min_step} and {self.max_share}"
            )
        if self.min_side < 2:
            raise ConfigurationError(f"temporal contrast needs min_side >= 2, got {self.min_side}")

    @property
    def enabled(self) -> bool:
        return self.min_step > 0


@dataclass(frozen=True)
class Step:
    """A run of frames ``first``..``last`` (indices into the clip's sampled frames) whose
    lowest logit lies ``step`` above the higher of the median logits of its shot before and
    after it, whose ``fake_prob`` is ``reference``."""

    first: int
    last: int
    step: float
    reference: float


def logit(probability: float) -> float:
    p = min(max(probability, _EPSILON), 1.0 - _EPSILON)
    return math.log(p / (1.0 - p))


RunCheck = Callable[[int, int], bool]


def candidate_steps(
    probabilities: Sequence[float | None],
    shots: Sequence[range],
    *,
    real_threshold: float,
    long_enough: RunCheck,
    contrast: TemporalContrast,
) -> Iterator[Step]:
    """Every run that may count, with its step. ``probabilities`` has each sampled frame's
    ``fake_prob``, None where a gate left the frame out; ``long_enough(first, last)`` says
    whether frames ``first``..``last`` hold enough frames over enough time."""
    for shot in shots:
        yield from _in_shot(probabilities, shot, real_threshold, long_enough, contrast)


def find_step(
    probabilities: Sequence[float | None],
    shots: Sequence[range],
    *,
    real_threshold: float,
    long_enough: RunCheck,
    contrast: TemporalContrast,
) -> Step | None:
    """The run that makes the clip fake, if any: of the runs whose step reaches
    ``min_step``, the longest (then the larger step), so that the segment covers the whole
    stretch and not only its most distinct frames."""
    if not contrast.enabled:
        return None
    steps = candidate_steps(
        probabilities,
        shots,
        real_threshold=real_threshold,
        long_enough=long_enough,
        contrast=contrast,
    )
    found = [s for s in steps if s.step >= contrast.min_step]
    return max(found, key=lambda s: (s.last - s.first, s.step, -s.first), default=None)


def _in_shot(
    probabilities: Sequence[float | None],
    shot: range,
    real_threshold: float,
    long_enough: RunCheck,
    contrast: TemporalContrast,
) -> Iterator[Step]:
    logits = {i: logit(p) for i in shot if (p := probabilities[i]) is not None}
    limit = math.floor(contrast.max_share * len(logits))
    # A run's frames must all be usable and above the real operating point.
    doubtful = [(probabilities[i] or 0.0) > real_threshold and i in logits for i in shot]
    # Both sides kept sorted as the run moves and grows, their medians in constant time: a
    # shot of n frames costs about n * n / 2 cheap steps (the service's 128 frames about
    # 15 ms; the most a deployment may set, 1,024, a second or two), not n cubed.
    before: list[float] = []
    remaining = sorted(logits.values())  # the usable frames from the run's start on
    for a in range(len(shot)):
        first = shot[a]
        if a > 0 and (previous := shot[a - 1]) in logits:
            bisect.insort(before, logits[previous])
            del remaining[bisect.bisect_left(remaining, logits[previous])]
        if not doubtful[a] or len(before) < contrast.min_side:
            continue
        before_median = _median(before)
        after = list(remaining)
        lowest = math.inf
        for b in range(a, min(len(shot), a + limit)):
            if not doubtful[b]:
                break
            last = shot[b]
            value = logits[last]
            del after[bisect.bisect_left(after, value)]
            lowest = min(lowest, value)
            if len(after) < contrast.min_side:
                break
            if not long_enough(first, last):
                continue
            # It must stand out from both sides: a score drifting up towards the end of a
            # shot has no lower side after it.
            reference = max(before_median, _median(after))
            yield Step(first, last, round(lowest - reference, 4), round(_sigmoid(reference), 4))


def _median(ordered: list[float]) -> float:
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))
