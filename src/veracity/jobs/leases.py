"""How a job is held: which rows may be claimed, the claim itself (SKIP LOCKED, then a
conditional update), the condition of still holding one, and what follows a job's end."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from veracity.store.schema import JobInputRow, JobRow


def claimable(now: datetime) -> Any:
    # A queued job's lease_until, when set, is the time before which it waits: a job
    # handed back because the service was busy lets the jobs behind it go first.
    return or_(
        and_(
            JobRow.status == "queued",
            or_(JobRow.lease_until.is_(None), JobRow.lease_until <= now),
        ),
        and_(JobRow.status == "running", JobRow.lease_until < now),
    )


def held(job_id: str, worker: str) -> Any:
    return and_(JobRow.id == job_id, JobRow.status == "running", JobRow.claimed_by == worker)


def take_oldest(session: Session, due: Any, oldest: Any, **values: Any) -> JobRow | None:
    """The claim both jobs and webhook deliveries use: the oldest row matching ``due`` that
    no other transaction is claiming (SKIP LOCKED), updated with ``values`` only if it still
    matches (which alone decides on SQLite). None when there is none, or another worker
    took it first."""
    candidate = session.scalars(
        select(JobRow.id).where(due).order_by(oldest).limit(1).with_for_update(skip_locked=True)
    ).first()
    if candidate is None:
        return None
    taken = session.execute(
        update(JobRow)
        .where(JobRow.id == candidate, due)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(JobRow, candidate, populate_existing=True)


def ended(session: Session, job_id: str, now: datetime) -> None:
    """What follows a job's end: its webhook is due, and its inputs (needed only to run it)
    are removed."""
    session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.webhook_url.is_not(None))
        .values(webhook_status="pending", webhook_next_at=now)
    )
    session.execute(delete(JobInputRow).where(JobInputRow.job_id == job_id))
