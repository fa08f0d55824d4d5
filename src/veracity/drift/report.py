"""What a drift assessment reports, in the shape ``GET /admin/drift`` answers and
``veracity drift-report`` writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from veracity.drift.compare import AGREEMENT, SignalScore, VersionDrift, Window


@dataclass(frozen=True)
class Unmonitored:
    model: str
    version: str
    reason: str


class SignalEntry(BaseModel):
    signal: str = Field(
        description="fake_prob, verdict, reasons, ood_score, pixels, "
        f"jpeg_quality, media_type or {AGREEMENT}."
    )
    state: Literal["ok", "drift", "insufficient", "empty"] = Field(
        description="drift: past its threshold; insufficient: too few answers (or reviews) "
        "in the window to score; empty: none at all. Neither of the last two is drift."
    )
    score: float | None = Field(
        description="The population stability index against the reference profile "
        f"({AGREEMENT}: the share of committed verdicts reviewers confirmed)."
    )
    threshold: float | None = Field(
        description="What the score was held against: the larger of VERACITY_DRIFT_PSI_"
        "THRESHOLD and the PSI two samples of one distribution reach by chance at this "
        f"window's size ({AGREEMENT}: the floor VERACITY_DRIFT_MIN_AGREEMENT)."
    )
    samples: int = Field(description="Answers (reviews) the score counts.")
    live: dict[str, float] | None = Field(description="The window's share per bin.")
    reference: dict[str, float] | None = Field(description="The reference's share per bin.")


class VersionDriftEntry(BaseModel):
    model: str
    version: str
    alert: bool = Field(description="Some signal is in state drift.")
    answers: int = Field(description="Answers of this version in the window (all replicas).")
    signals: list[SignalEntry]


class UnmonitoredEntry(BaseModel):
    model: str
    version: str
    reason: str


class DriftReport(BaseModel):
    window_start: datetime
    window_end: datetime
    window_s: float
    versions: list[VersionDriftEntry]
    unmonitored: list[UnmonitoredEntry] = Field(
        description="Versions that cannot be scored (no drift profile), and why."
    )


def _signal(score: SignalScore) -> SignalEntry:
    return SignalEntry(
        signal=score.signal,
        state=score.state,
        score=score.score,
        threshold=score.threshold,
        samples=score.samples,
        live=score.live,
        reference=score.reference,
    )


def version_entry(drift: VersionDrift) -> VersionDriftEntry:
    return VersionDriftEntry(
        model=drift.model,
        version=drift.version,
        alert=drift.alert,
        answers=drift.answers,
        signals=[_signal(s) for s in drift.signals],
    )


def drift_report(
    window: Window, versions: Sequence[VersionDrift], unmonitored: Sequence[Unmonitored]
) -> DriftReport:
    return DriftReport(
        window_start=window.start,
        window_end=window.end,
        window_s=(window.end - window.start).total_seconds(),
        versions=[version_entry(d) for d in versions],
        unmonitored=[
            UnmonitoredEntry(model=u.model, version=u.version, reason=u.reason) for u in unmonitored
        ],
    )
