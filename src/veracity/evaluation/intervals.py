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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

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


def _share(arm: str, verdict: str) -> Measure:
    def measure(columns: _Columns, index: np.ndarray) -> float:
        chosen = columns.verdict[index][columns.arm[index] == arm]
        return float((chosen == verdict).mean()) if len(chosen) else math.nan

    return measure


def _touch_rate(columns: _Columns, index: np.ndarray) -> float:
    fakes = (columns.arm[index] == "edited") & (columns.verdict[index] == "fake")
    touches = columns.touches[index][fakes & (columns.touches[index] >= 0)]
    return float(touches.mean()) if len(touches) else math.nan


def _ece(columns: _Columns, index: np.ndarray) -> float:
    arms = columns.arm[index]
    chosen = (arms == "jpeg") | (arms == "edited")
    labels = (arms[chosen] == "edited").astype(np.float64)
    return expected_calibration_error(columns.fake_prob[index][chosen], labels)


# The image goals of heldout_report.goals, by name, as measures of the items drawn.
GOAL_MEASURES: Mapping[str, Measure] = {
    "photos_never_fake": _share("jpeg", "fake"),
    "photos_real": _share("jpeg", "real"),
    "edited_fake": _share("edited", "fake"),
    "edited_real": _share("edited", "real"),
    "edit_located": _touch_rate,
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
    members = [np.array([k for k, i in enumerate(judged) if i.photo == p]) for p in photos]
    rng = np.random.default_rng(seed)
    values = {name: np.empty(resamples) for name in GOAL_MEASURES}
    for r in range(resamples):
        drawn = rng.integers(len(photos), size=len(photos))
        index = np.concatenate([members[d] for d in drawn])
        for name, measure in GOAL_MEASURES.items():
            values[name][r] = measure(columns, index)
    tail = (1 - level) / 2 * 100
    intervals = {}
    for name, draws in values.items():
        defined = draws[~np.isnan(draws)]
        if not len(defined):
            intervals[name] = (math.nan, math.nan)
            continue
        low, high = np.percentile(defined, [tail, 100 - tail])
        intervals[name] = (float(low), float(high))
    return intervals
