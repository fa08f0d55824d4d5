"""A job as the queue hands it out: its record, its inputs, and the queue's depth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from veracity.store.schema import JobRow

JobKind = Literal["video", "batch"]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class Job:
    id: str
    request_id: str
    key_id: str | None
    kind: JobKind
    status: JobStatus
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    webhook_url: str | None
    webhook_status: str | None
    webhook_attempts: int
    webhook_error: str | None
    traceparent: str | None = None  # of the request that created it

    @classmethod
    def of(cls, row: JobRow) -> Job:
        return cls(
            id=row.id,
            request_id=row.request_id,
            key_id=row.key_id,
            kind=row.kind,  # type: ignore[arg-type]
            status=row.status,  # type: ignore[arg-type]
            params=dict(row.params),
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            attempts=row.attempts,
            result=row.result,
            error=row.error,
            webhook_url=row.webhook_url,
            webhook_status=row.webhook_status,
            webhook_attempts=row.webhook_attempts,
            webhook_error=row.webhook_error,
            traceparent=row.traceparent,
        )


@dataclass(frozen=True)
class JobInput:
    filename: str | None
    data: bytes


@dataclass(frozen=True)
class QueueDepth:
    queued: int
    running: int
    oldest_queued_s: float  # 0 when none is waiting
