"""How drift is watched, built by the settings and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DriftThresholds:
    """When a signal counts as drifted (veracity.drift.compare says why these)."""

    psi: float = 0.25
    significance: float = 0.001
    min_answers: int = 100
    min_agreement: float = 0.8
    min_reviews: int = 20


@dataclass(frozen=True)
class DriftOptions:
    """``window_s``: the live window every signal is scored over (the last hour by default);
    ``review_window_s``: the window of reviewers' labels (a week: labels come days after
    the answers, and a few a day); ``interval_s``: how often the gauges are recomputed;
    ``max_answers``: the newest answers of a window read at most (a sample of a busy hour
    is enough for a PSI, and it bounds the work of each refresh)."""

    window_s: float = 3600.0
    review_window_s: float = 7 * 86_400.0
    interval_s: float = 60.0
    max_answers: int = 5000
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
