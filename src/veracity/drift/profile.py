"""The reference profile: what the served pipeline answered on the calibration data,
counted per signal, written beside the weights as ``NAME.drift.json``.

The counts are what a live window is compared with; the bins (decile edges, category
labels) are fixed here, so every replica bins live answers the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from veracity.checkpoint import CheckpointMetadata, CheckpointPaths, read_drift_profile
from veracity.drift.signals import (
    OTHER,
    SIGNALS,
    Observation,
    Signal,
    SignalKind,
    bin_values,
    quantile_edges,
    quantile_labels,
)
from veracity.errors import CheckpointError

PROFILE_VERSION: Literal[1] = 1


class SignalProfile(BaseModel):
    """One signal's bins and the reference's count in each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SignalKind
    edges: list[float] = Field(default_factory=list, description="Inner bin edges (quantile).")
    labels: list[str] = Field(description="Bin labels, in order.")
    counts: list[Annotated[int, Field(ge=0)]]

    def count_map(self) -> dict[str, int]:
        return dict(zip(self.labels, self.counts, strict=True))


class DriftProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile_version: Literal[1] = PROFILE_VERSION
    model_name: str
    model_version: str
    calibration_version: int | None
    built_at: datetime
    answers: Annotated[int, Field(ge=1)]
    data: str
    signals: dict[str, SignalProfile]


def profile_signal(signal: Signal, observations: Sequence[Observation]) -> SignalProfile:
    if signal.kind == "quantile":
        present = [
            float(v)
            for o in observations
            for v in signal.values(o)
            if v is not None and not isinstance(v, str)
        ]
        edges = quantile_edges(present)
        labels = quantile_labels(edges)
        counts = bin_values(signal, observations, edges=edges)
    else:
        counts = bin_values(signal, observations)
        labels = [*sorted(set(counts) | set(signal.categories)), OTHER]
        edges = []
    return SignalProfile(
        kind=signal.kind, edges=edges, labels=labels, counts=[counts[label] for label in labels]
    )


def build_profile(
    observations: Sequence[Observation],
    *,
    model_name: str,
    model_version: str,
    calibration_version: int | None,
    built_at: datetime,
    data: str,
) -> DriftProfile:
    """Raises ValueError when there is nothing to profile."""
    if not observations:
        raise ValueError("a drift profile needs at least one answer")
    return DriftProfile(
        model_name=model_name,
        model_version=model_version,
        calibration_version=calibration_version,
        built_at=built_at,
        answers=len(observations),
        data=data,
        signals={s.name: profile_signal(s, observations) for s in SIGNALS},
    )


def encode_profile(profile: DriftProfile) -> bytes:
    return (profile.model_dump_json(indent=1) + "\n").encode()


def load_profile(paths: CheckpointPaths, metadata: CheckpointMetadata) -> DriftProfile | None:
    """The checkpoint's verified profile; None when it has none.

    Raises:
        CheckpointError: the profile is missing, was changed, or is not a profile.
    """
    data = read_drift_profile(paths, metadata)
    if data is None:
        return None
    try:
        return DriftProfile.model_validate_json(data)
    except ValidationError as e:
        raise CheckpointError(
            f"drift profile {paths.drift_profile} is not a valid profile: {e}"
        ) from e
