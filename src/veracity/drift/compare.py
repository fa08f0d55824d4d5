"""A live window against the reference profile, one score per signal.

The score is the population stability index (PSI), the symmetric Kullback-Leibler
divergence between the window's and the reference's bin shares:
``sum((p_live - p_ref) * ln(p_live / p_ref))``. Chosen over a two-sample test (KS,
chi-square) because it measures how far the distribution moved, not how sure we are that
it moved: at ten thousand answers an hour a test's p-value flags shifts too small to
matter, while a PSI of 0.25 means the same amount of change at any traffic. It works alike
for categories (verdicts, reasons, media types) and binned numbers, and it needs only the
reference's counts, not its raw values.

Its weakness is small windows: two samples of one distribution differ by chance, and
``n·m/(n+m) · PSI`` is asymptotically chi-square with (bins - 1) degrees of freedom. So a
signal alerts only when its PSI passes both the configured threshold (the size of change
that matters) and the chance level at the window's size (``significance`` 0.001), and a
window with fewer than ``min_answers`` answers is reported as too small, not scored.

Reviewers' labels are the other signal: the share of committed verdicts (real or fake) of
this version that reviewers confirmed, with its own floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from scipy.stats import chi2

from veracity.drift.options import DriftThresholds
from veracity.drift.profile import DriftProfile, SignalProfile
from veracity.drift.signals import SIGNALS, Observation, bin_values

SignalState = Literal["ok", "drift", "insufficient", "empty"]
AGREEMENT = "reviewer_agreement"
# Added to every bin's count (Jeffreys' prior) so an empty bin gives a finite log ratio.
_PSEUDO_COUNT = 0.5


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Review:
    verdict: str
    label: str


@dataclass(frozen=True)
class SignalScore:
    signal: str
    state: SignalState
    score: float | None  # PSI, or for reviewer_agreement the agreement
    threshold: float | None  # what the score was held against
    samples: int
    live: dict[str, float] | None = None  # the window's bin shares
    reference: dict[str, float] | None = None


@dataclass(frozen=True)
class VersionDrift:
    model: str
    version: str
    window: Window
    answers: int
    signals: tuple[SignalScore, ...]

    @property
    def alert(self) -> bool:
        return any(s.state == "drift" for s in self.signals)


def psi(reference: Sequence[float], live: Sequence[float]) -> float:
    """PSI of two count vectors over the same bins."""
    ref = np.asarray(reference, dtype=np.float64) + _PSEUDO_COUNT
    cur = np.asarray(live, dtype=np.float64) + _PSEUDO_COUNT
    p, q = ref / ref.sum(), cur / cur.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def chance_level(bins: int, reference: int, live: int, significance: float) -> float:
    """The PSI that two samples of one distribution exceed with probability ``significance``."""
    if bins < 2 or reference == 0 or live == 0:
        return 0.0
    return float(chi2.ppf(1.0 - significance, bins - 1)) * (1.0 / reference + 1.0 / live)


def _shares(labels: Sequence[str], counts: Sequence[float]) -> dict[str, float]:
    total = float(sum(counts)) or 1.0
    return {label: round(count / total, 4) for label, count in zip(labels, counts, strict=True)}


def score_signal(
    name: str,
    profile: SignalProfile,
    observations: Sequence[Observation],
    thresholds: DriftThresholds,
) -> SignalScore:
    signal = next(s for s in SIGNALS if s.name == name)
    if not observations:
        reference = _shares(profile.labels, profile.counts)
        return SignalScore(name, "empty", None, None, 0, reference=reference)
    counts = bin_values(signal, observations, edges=profile.edges, labels=profile.labels)
    live = [counts.get(label, 0) for label in profile.labels]
    shares = _shares(profile.labels, live), _shares(profile.labels, profile.counts)
    if len(observations) < thresholds.min_answers:
        return SignalScore(name, "insufficient", None, None, len(observations), *shares)
    score = psi(profile.counts, live)
    floor = chance_level(
        len(profile.labels), sum(profile.counts), sum(live), thresholds.significance
    )
    threshold = max(thresholds.psi, floor)
    state: SignalState = "drift" if score > threshold else "ok"
    return SignalScore(
        name, state, round(score, 4), round(threshold, 4), len(observations), *shares
    )


def score_agreement(reviews: Sequence[Review], thresholds: DriftThresholds) -> SignalScore:
    committed = [r for r in reviews if r.verdict in ("real", "fake")]
    if not committed:
        return SignalScore(AGREEMENT, "empty", None, thresholds.min_agreement, 0)
    agreement = sum(r.verdict == r.label for r in committed) / len(committed)
    if len(committed) < thresholds.min_reviews:
        state: SignalState = "insufficient"
    else:
        state = "drift" if agreement < thresholds.min_agreement else "ok"
    return SignalScore(
        AGREEMENT, state, round(agreement, 4), thresholds.min_agreement, len(committed)
    )


def assess(
    model: str,
    version: str,
    profile: DriftProfile,
    window: Window,
    observations: Sequence[Observation],
    reviews: Sequence[Review],
    thresholds: DriftThresholds,
) -> VersionDrift:
    """Every signal of one model version (as the service names it) over one window."""
    scores = [
        score_signal(signal.name, profile.signals[signal.name], observations, thresholds)
        for signal in SIGNALS
        if signal.name in profile.signals  # a profile from before a signal was added
    ]
    scores.append(score_agreement(reviews, thresholds))
    return VersionDrift(
        model=model,
        version=version,
        window=window,
        answers=len(observations),
        signals=tuple(scores),
    )


def gauge_value(score: SignalScore) -> float:
    """What ``veracity_drift_score`` shows: the score, or NaN when there is none (an empty
    or too small window is not drift, and a NaN never passes an alert's comparison)."""
    return score.score if score.score is not None and score.state in ("ok", "drift") else math.nan
