"""The job queue, in the results database: enqueue, claim, finish, fail, and the webhook
deliveries that follow.

Claiming is the standard PostgreSQL pattern: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks the
oldest claimable job no other replica is claiming, then a conditional ``UPDATE`` takes it
(on SQLite, which serialises writers, the conditional update alone decides). A claimed job
holds a lease that its worker renews; a job whose lease ran out (its process died) is
claimed again. Finishing is conditional on still holding the claim and writes the job's
verdicts in the same transaction, so each job's result is recorded exactly once, however
many times it was started.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from veracity.callers import Caller
from veracity.errors import (
    BadRequestError,
    JobEndedError,
    NotFoundError,
    OverloadedError,
    StoreUnavailableError,
)
from veracity.jobs.leases import claimable, ended, held, take_oldest
from veracity.jobs.records import Job, JobInput, JobKind, QueueDepth
from veracity.store.database import Database
from veracity.store.predictions import may_see
from veracity.store.schema import JobInputRow, JobRow, PredictionRow
from veracity.tracing import current_traceparent

CANCELLED = {"code": "cancelled", "message": "the job was cancelled by its key"}


def _now() -> datetime:
    return datetime.now(UTC)


def _idempotency_digest(caller: Caller, idempotency_key: str | None) -> str | None:
    """Scoped to the key: another key's equal header never finds this key's job."""
    if idempotency_key is None:
        return None
    scoped = f"{caller.key_id or ''}\n{idempotency_key}"
    return hashlib.sha256(scoped.encode()).hexdigest()


def _repeated(session: Session, digest: str | None, kind: str) -> Job | None:
    if digest is None:
        return None
    row = session.scalars(select(JobRow).where(JobRow.idempotency_key == digest)).first()
    if row is None:
        return None
    if row.kind != kind:
        raise BadRequestError(
            f"this Idempotency-Key was used for a {row.kind} job; use a new key for another request"
        )
    return Job.of(row)


class JobQueue:
    def __init__(
        self,
        database: Database,
        *,
        lease_s: float,
        max_attempts: int,
        max_queued_bytes: int | None = None,
    ) -> None:
        self.database = database
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.max_queued_bytes = max_queued_bytes

    async def enqueue(
        self,
        *,
        job_id: str,
        request_id: str,
        caller: Caller,
        kind: JobKind,
        params: dict[str, Any],
        inputs: list[JobInput],
        webhook_url: str | None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Store a job and its inputs; once this returns, the job survives any restart.

        With an ``idempotency_key`` (the client's Idempotency-Key header), the job this key
        already created with it is returned instead of a new one: a client that got no
        answer, or an unknown outcome, sends the same request again safely.

        Raises:
            BadRequestError: the key used this Idempotency-Key for a job of another kind.
            StoreUnavailableError: nothing was stored.
            StoreOutcomeUnknownError: the job may have been stored (repeat with the key).
        """
        digest = _idempotency_digest(caller, idempotency_key)
        # Read here, on the request's task: the job's run and webhook continue its trace.
        traceparent = current_traceparent()

        def existing(session: Session) -> Job | None:
            return _repeated(session, digest, kind)

        def work(session: Session) -> Job:
            found = existing(session)
            if found is not None:
                return found
            row = JobRow(
                id=job_id,
                request_id=request_id,
                key_id=caller.key_id,
                kind=kind,
                status="queued",
                params=params,
                created_at=_now(),
                attempts=0,
                webhook_url=webhook_url,
                webhook_attempts=0,
                idempotency_key=digest,
                traceparent=traceparent,
            )
            session.add(row)
            # The job row first: the inputs' foreign key needs it.
            session.flush()
            session.add_all(
                JobInputRow(job_id=job_id, position=i, filename=item.filename, data=item.data)
                for i, item in enumerate(inputs)
            )
            return Job.of(row)

        try:
            return await self.database.run("job_enqueue", work)
        except StoreUnavailableError as e:
            # The same key sent twice at once: the other request's job won the unique index.
            if digest is None or not isinstance(e.__cause__, IntegrityError):
                raise
            found = await self.database.run("job_enqueue", existing)
            if found is None:
                raise
            return found

    async def find_repeat(
        self, caller: Caller, idempotency_key: str | None, kind: JobKind
    ) -> Job | None:
        """The job this key already created with this Idempotency-Key (None: none yet), so
        that a repeated request is answered before its body is received again.

        Raises:
            BadRequestError: the key used this Idempotency-Key for a job of another kind.
            StoreUnavailableError.
        """
        digest = _idempotency_digest(caller, idempotency_key)
        if digest is None:
            return None
        return await self.database.run(
            "job_repeat", lambda session: _repeated(session, digest, kind)
        )

    async def get(self, job_id: str, caller: Caller) -> Job:
        """Raises NotFoundError (also for another key's job), StoreUnavailableError."""

        def work(session: Session) -> Job:
            return Job.of(self._visible(session, job_id, caller))

        return await self.database.run("job_get", work)

    @staticmethod
    def _visible(session: Session, job_id: str, caller: Caller) -> JobRow:
        row = session.get(JobRow, job_id)
        if row is None or not may_see(caller, row.key_id):
            shown = job_id if len(job_id) <= 64 else job_id[:64] + "..."
            raise NotFoundError(
                f"no job {shown!r} for this key; a key sees only the jobs it created"
            )
        return row

    async def claim(self, worker: str) -> tuple[Job, list[JobInput]] | None:
        """The oldest claimable job with its inputs, now running under ``worker``'s lease;
        None when there is none (or another worker took it first)."""

        def work(session: Session) -> tuple[Job, list[JobInput]] | None:
            now = _now()
            row = take_oldest(
                session,
                claimable(now),
                JobRow.created_at,
                status="running",
                claimed_by=worker,
                lease_until=now + timedelta(seconds=self.lease_s),
                started_at=func.coalesce(JobRow.started_at, now),
                attempts=JobRow.attempts + 1,
            )
            if row is None:
                return None
            inputs = [
                JobInput(item.filename, item.data)
                for item in session.scalars(
                    select(JobInputRow)
                    .where(JobInputRow.job_id == row.id)
                    .order_by(JobInputRow.position)
                )
            ]
            return Job.of(row), inputs

        return await self.database.run("job_claim", work)

    async def renew(self, job_id: str, worker: str) -> bool:
        """Extend the lease; False when the claim was lost (the job went to another worker)."""

        def work(session: Session) -> bool:
            result = session.execute(
                update(JobRow)
                .where(held(job_id, worker))
                .values(lease_until=_now() + timedelta(seconds=self.lease_s))
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return await self.database.run("job_renew", work)

    async def release(self, job_id: str, worker: str, *, wait_s: float = 0.0) -> None:
        """Back to the queue without counting an attempt (the service was busy, or is
        stopping); claimable again after ``wait_s``, so that it does not stay first in line
        while it cannot run."""

        def work(session: Session) -> None:
            session.execute(
                update(JobRow)
                .where(held(job_id, worker))
                .values(
                    status="queued",
                    claimed_by=None,
                    lease_until=_now() + timedelta(seconds=wait_s) if wait_s else None,
                    attempts=JobRow.attempts - 1,
                )
            )

        await self.database.run("job_release", work)

    async def release_all(self, workers: list[str]) -> int:
        """Hand back every job these workers still hold (at shutdown: including one claimed
        just as its worker was cancelled); the number handed back."""

        def work(session: Session) -> int:
            result = session.execute(
                update(JobRow)
                .where(JobRow.status == "running", JobRow.claimed_by.in_(workers))
                .values(
                    status="queued",
                    claimed_by=None,
                    lease_until=None,
                    attempts=JobRow.attempts - 1,
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

        return await self.database.run("job_release", work)

    async def cancel(self, job_id: str, caller: Caller) -> Job:
        """End a queued or running job as cancelled (a running one's worker loses its claim
        and stops); a cancelled job is answered as it is.

        Raises:
            NotFoundError: no such job for this key.
            JobEndedError: the job already ended (done or failed): its outcome stands.
            StoreUnavailableError.
        """

        def work(session: Session) -> Job:
            row = self._visible(session, job_id, caller)
            if row.status in ("done", "failed"):
                raise JobEndedError(
                    f"the job already ended ({row.status}); there is nothing to cancel"
                )
            if row.status != "cancelled":
                now = _now()
                session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status.in_(("queued", "running")))
                    .values(
                        status="cancelled",
                        error=CANCELLED,
                        finished_at=now,
                        claimed_by=None,
                        lease_until=None,
                    )
                )
                ended(session, job_id, now)
                session.refresh(row)
            return Job.of(row)

        return await self.database.run("job_cancel", work)

    async def check_room(self, nbytes: int) -> None:
        """Refuse a job whose inputs would take the queue's waiting uploads past
        ``max_queued_bytes`` (the database, and every replica's disk, stay bounded).

        Raises:
            OverloadedError: the queue is full for now.
            StoreUnavailableError.
        """
        limit = self.max_queued_bytes
        if limit is None:
            return

        def work(session: Session) -> int:
            waiting = session.scalar(
                select(func.coalesce(func.sum(func.length(JobInputRow.data)), 0))
            )
            return int(waiting or 0)

        waiting = await self.database.run("job_room", work)
        if waiting and waiting + nbytes > limit:
            raise OverloadedError(
                f"the job queue already holds {waiting / 2**20:.1f} MB of uploads of jobs not "
                f"yet finished, of {limit / 2**20:.1f} MB (VERACITY_JOB_QUEUE_MAX_MB); retry "
                "after the delay in Retry-After",
                retry_after_s=30,
            )

    async def finish(
        self,
        job_id: str,
        worker: str,
        *,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        rows: list[PredictionRow],
    ) -> bool:
        """Mark the job done (``result``) or failed (``error``) and record its verdicts in one
        transaction; False, changing nothing, when the claim was lost meanwhile."""

        def work(session: Session) -> bool:
            now = _now()
            updated = session.execute(
                update(JobRow)
                .where(held(job_id, worker))
                .values(
                    status="done" if error is None else "failed",
                    result=result,
                    error=error,
                    finished_at=now,
                    lease_until=None,
                )
            )
            if updated.rowcount != 1:  # type: ignore[attr-defined]
                return False
            session.add_all(rows)
            ended(session, job_id, now)
            return True

        return await self.database.run("job_finish", work)

    async def exhausted(self, worker: str) -> list[str]:
        """Fail the jobs claimed ``max_attempts`` times without finishing (each start ended
        the process, most likely): they are not started again."""

        def work(session: Session) -> list[str]:
            now = _now()
            ids = list(
                session.scalars(
                    select(JobRow.id).where(
                        claimable(now),
                        JobRow.status == "running",
                        JobRow.attempts >= self.max_attempts,
                    )
                )
            )
            failed = []
            for job_id in ids:
                given_up = session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, claimable(now))
                    .values(
                        status="failed",
                        finished_at=now,
                        lease_until=None,
                        error={
                            "code": "job_attempts_exhausted",
                            "message": f"the job was started {self.max_attempts} times and "
                            "never finished (the service stopped while running it each "
                            "time); it is not retried. Check the file, or send it again.",
                        },
                    )
                )
                # Another worker may have claimed it meanwhile: then it is that worker's.
                if given_up.rowcount == 1:  # type: ignore[attr-defined]
                    ended(session, job_id, now)
                    failed.append(job_id)
            return failed

        return await self.database.run("job_exhausted", work)

    async def claim_webhook(self, hold_s: float) -> Job | None:
        """A finished job whose webhook is due, held for ``hold_s`` so that no other replica
        delivers it at the same time."""

        def work(session: Session) -> Job | None:
            now = _now()
            due = and_(JobRow.webhook_status == "pending", JobRow.webhook_next_at <= now)
            row = take_oldest(
                session,
                due,
                JobRow.webhook_next_at,
                webhook_next_at=now + timedelta(seconds=hold_s),
                webhook_attempts=JobRow.webhook_attempts + 1,
            )
            return None if row is None else Job.of(row)

        return await self.database.run("webhook_claim", work)

    async def webhook_outcome(
        self, job_id: str, *, delivered: bool, error: str | None, retry_in_s: float | None
    ) -> None:
        """Delivered; or failed for now (retry after ``retry_in_s``); or for good (None)."""

        def work(session: Session) -> None:
            if delivered:
                values: dict[str, Any] = {"webhook_status": "delivered", "webhook_error": None}
            elif retry_in_s is not None:
                values = {
                    "webhook_error": error,
                    "webhook_next_at": _now() + timedelta(seconds=retry_in_s),
                }
            else:
                values = {"webhook_status": "failed", "webhook_error": error}
            session.execute(update(JobRow).where(JobRow.id == job_id).values(**values))

        await self.database.run("webhook_outcome", work)

    async def depth(self) -> QueueDepth:
        def work(session: Session) -> QueueDepth:
            counts = {
                status: count
                for status, count in session.execute(
                    select(JobRow.status, func.count())
                    .where(JobRow.status.in_(("queued", "running")))
                    .group_by(JobRow.status)
                )
            }
            oldest = session.scalar(
                select(func.min(JobRow.created_at)).where(JobRow.status == "queued")
            )
            if oldest is not None and oldest.tzinfo is None:  # SQLite's aggregate: naive UTC
                oldest = oldest.replace(tzinfo=UTC)
            age = (_now() - oldest).total_seconds() if oldest is not None else 0.0
            return QueueDepth(counts.get("queued", 0), counts.get("running", 0), max(0.0, age))

        return await self.database.run("job_depth", work)
