"""How sure the held-out numbers are: bootstrap intervals that resample photographs.

The held-out list is a few dozen photographs, and each one gives several items (the
re-saved copy and one edited copy per kind), judged on the same pixels: the items of one
photograph are not independent. A share of 252 edited copies is really a share over 42
photographs, and an interval that treated the copies as 252 draws would be about
sqrt(6) times too narrow. So the bootstrap resamples *photographs* with replacement
(a cluster bootstrap) and measures each goal on all the items of the photographs drawn;
the interval is the percentile interval of those measures.

Written here rather than with ``scipy.stats.bootstrap``: that resamples observations, and
its percentiles do not skip a resample in which a measure is undefined (no copy judged
``fake``, so no localisation share), which a share over few items often is.

A percentile bootstrap cannot leave 0% or 100%: "0 of 42 photographs called fake" would
read 0% to 0%, as if certain. So a share of 0% or 100% gets the exact (Clopper-Pearson)
binomial interval over the number of photographs it rests on: 0 of 42 reads 0% to 8.4%.
(Between the two, each photograph's copies are only partly alike, which the resampling
measures; counting each photograph as one observation there would overstate the spread.)
The calibration error has no such floor, and its bootstrap is biased upwards (a resample
repeats photographs, which makes its bins noisier): read its interval as the spread, not as
centred on the truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from veracity.evaluation.heldout import HeldOutItem
from veracity.verdicts.calibration import expected_calibration_error

LEVEL = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class _Columns:
    """The judged items as arrays, one entry per item."""

    arm: np.ndarray
    verdict: np.ndarray
    fake_prob: np.ndarray
    touches: np.ndarray  # 1 touches, 0 does not, -1 no grid

    @classmethod
    def of(cls, items: Sequence[HeldOutItem]) -> _Columns:
        return cls(
            arm=np.array([i.arm for i in items]),
            verdict=np.array([i.verdict for i in items]),
            fake_prob=np.array([i.fake_prob for i in items], dtype=np.float64),
            touches=np.array([-1 if i.touches is None else int(i.touches) for i in items]),
        )


Measure = Callable[[_Columns, np.ndarray], float]
# The items a share is over, as a mask of the items at ``index``.
Population = Callable[[_Columns, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Share:
    """A share of a population of items that hold a property."""

    population: Population
    holds: Callable[[_Columns, np.ndarray], np.ndarray]

    def __call__(self, columns: _Columns, index: np.ndarray) -> float:
        chosen = self.population(columns, index)
        if not chosen.any():
            return math.nan
        return float(self.holds(columns, index)[chosen].mean())


def _arm_share(arm: str, verdict: str) -> _Share:
    return _Share(
        population=lambda columns, index: columns.arm[index] == arm,
        holds=lambda columns, index: columns.verdict[index] == verdict,
    )


# Of the edited copies judged fake with a grid: the share whose top cell touches the edit.
_TOUCH_RATE = _Share(
    population=lambda columns, index: (
        (columns.arm[index] == "edited")
        & (columns.verdict[index] == "fake")
        & (columns.touches[index] >= 0)
    ),
    holds=lambda columns, index: columns.touches[index] == 1,
)


def _ece(columns: _Columns, index: np.ndarray) -> float:
    arms = columns.arm[index]
    chosen = (arms == "jpeg") | (arms == "edited")
    labels = (arms[chosen] == "edited").astype(np.float64)
    return expected_calibration_error(columns.fake_prob[index][chosen], labels)


# The image goals of heldout_report.goals, by name, as measures of the items drawn.
GOAL_MEASURES: Mapping[str, Measure] = {
    "photos_never_fake": _arm_share("jpeg", "fake"),
    "photos_real": _arm_share("jpeg", "real"),
    "edited_fake": _arm_share("edited", "fake"),
    "edited_real": _arm_share("edited", "real"),
    "edit_located": _TOUCH_RATE,
    "calibration": _ece,
}


def goal_intervals(
    items: Sequence[HeldOutItem],
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Each image goal's ``level`` percentile interval over ``resamples`` draws of the
    photographs (items that could not be judged are left out, as the report does); NaN
    bounds where the measure was undefined in every draw."""
    judged = [i for i in items if i.error is None]
    photos = sorted({i.photo for i in judged})
    if not photos:
        return {name: (math.nan, math.nan) for name in GOAL_MEASURES}
    columns = _Columns.of(judged)
    number = {photo: k for k, photo in enumerate(photos)}
    photo_of = np.array([number[i.photo] for i in judged])
    members = [np.flatnonzero(photo_of == k) for k in range(len(photos))]
    rng = np.random.default_rng(seed)
    values = {name: np.empty(resamples) for name in GOAL_MEASURES}
    for r in range(resamples):
        drawn = rng.integers(len(photos), size=len(photos))
        index = np.concatenate([members[d] for d in drawn])
        for name, measure in GOAL_MEASURES.items():
            values[name][r] = measure(columns, index)
    tail = (1 - level) / 2 * 100
    everything = np.arange(len(judged))
    intervals = {}
    for name, draws in values.items():
        defined = draws[~np.isnan(draws)]
        if not len(defined):
            intervals[name] = (math.nan, math.nan)
            continue
        low, high = (float(v) for v in np.percentile(defined, [tail, 100 - tail]))
        measure = GOAL_MEASURES[name]
        if isinstance(measure, _Share) and (share := measure(columns, everything)) in (0.0, 1.0):
            over = len(set(photo_of[measure.population(columns, everything)]))
            exact = _exact(share, over, level)
            low, high = min(low, exact[0]), max(high, exact[1])
        intervals[name] = (low, high)
    return intervals


def _exact(share: float, photographs: int, level: float) -> tuple[float, float]:
    """The Clopper-Pearson interval of ``share`` as if each of ``photographs`` were one
    independent observation."""
    if math.isnan(share) or photographs == 0:
        return (math.nan, math.nan)
    found = binomtest(round(share * photographs), photographs)
    bounds = found.proportion_ci(confidence_level=level, method="exact")
    return (float(bounds.low), float(bounds.high))
