"""The parameters of a job, one frozen type per kind, as stored with it (JSON) and read back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from veracity.jobs.records import JobKind
from veracity.video.aggregate import AggregationMethod


@dataclass(frozen=True)
class VideoJobParams:
    count: int
    every_s: float | None
    aggregation: AggregationMethod
    model: str | None = None
    model_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VideoJobParams:
        return cls(
            count=data["count"],
            every_s=data["every_s"],
            aggregation=data["aggregation"],
            # Jobs queued before models could be chosen have no such parameters.
            model=data.get("model"),
            model_version=data.get("model_version"),
        )


@dataclass(frozen=True)
class BatchJobParams:
    robustness_check: bool | None
    model: str | None = None
    model_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchJobParams:
        return cls(
            robustness_check=data["robustness_check"],
            model=data.get("model"),
            model_version=data.get("model_version"),
        )


JobParams = VideoJobParams | BatchJobParams


def kind_of(params: JobParams) -> JobKind:
    return "video" if isinstance(params, VideoJobParams) else "batch"


def read_params(kind: JobKind, data: Mapping[str, Any]) -> JobParams:
    """The parameters a job of ``kind`` was stored with."""
    if kind == "video":
        return VideoJobParams.from_json(data)
    return BatchJobParams.from_json(data)
