"""The models' desired state in the shared database: its revisions, and what each replica
applied.

An admin change on any replica appends a revision (compare-and-set: it names the revision it
was made against, and the next number is a primary key, so of two changes made against the
same revision exactly one is stored). Every replica reads the latest one and reports the
revision it applied. The documents are plain JSON here; the serving core gives them their
meaning (veracity.serving.desired).

On PostgreSQL the appending transaction also sends ``NOTIFY``, so replicas that ``LISTEN``
(``listen``) apply a change within milliseconds instead of at their next poll; a missed
notification costs only the poll interval, never the change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from veracity.errors import RevisionConflictError
from veracity.store.database import Database, describe_error
from veracity.store.schema import ModelRevisionRow, ReplicaRow

logger = logging.getLogger("veracity.store")

CHANNEL = "veracity_models"
# A replica not heard from for a day is gone for good (a pod replaced long ago): its row is
# removed so that the list stays the fleet of today.
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class StoredRevision:
    revision: int
    created_at: datetime
    action: str
    model_name: str
    key_id: str | None
    document: dict[str, Any]


@dataclass(frozen=True)
class ReplicaReport:
    replica_id: str
    started_at: datetime
    seen_at: datetime
    applied_revision: int
    failed_revision: int | None  # the revision it could not apply, if any
    reason: str | None
    serving: dict[str, str]  # model -> the version its unnamed requests go to


def _conflict(base: int) -> RevisionConflictError:
    return RevisionConflictError(
        f"the models changed while this change was made: it was made against revision "
        f"{base}, and another change was stored as revision {base + 1} first; nothing was "
        "changed. Read GET /models again and decide once more"
    )


class RevisionLog:
    """The revisions and the replicas' reports, through the database's deadline-bounded
    operations (a database outage is a 503, and a replica keeps serving what it applied)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @property
    def notifies(self) -> bool:
        """Whether replicas can LISTEN for new revisions (else they poll)."""
        return self.database.engine.dialect.name == "postgresql"

    async def latest(self) -> StoredRevision | None:
        def read(session: Session) -> StoredRevision | None:
            row = session.scalars(
                select(ModelRevisionRow).order_by(ModelRevisionRow.revision.desc()).limit(1)
            ).first()
            return None if row is None else _revision(row)

        return await self.database.run("read_revision", read)

    async def append(
        self, base: int, document: dict[str, Any], *, action: str, model: str, key_id: str | None
    ) -> int:
        """Store ``document`` as revision ``base + 1`` and return that number.

        Raises:
            RevisionConflictError: a revision after ``base`` exists (another change won).
            StoreUnavailableError: the database failed; nothing was stored.
        """
        revision = base + 1

        def write(session: Session) -> int:
            # The insert is the whole check: revisions are made one after another, so if
            # base + 1 is free, base is the latest. (Reading first would let SQLite's
            # snapshot go stale before the write.)
            session.add(
                ModelRevisionRow(
                    revision=revision,
                    created_at=datetime.now(UTC),
                    action=action,
                    model_name=model,
                    key_id=key_id,
                    document=document,
                )
            )
            try:
                # Two changes against the same base: the second insert waits for the first
                # transaction and then fails on the key.
                session.flush()
            except IntegrityError as e:
                raise _conflict(base) from e
            if self.notifies:
                # Delivered at commit, to every replica listening (this one included).
                session.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": str(revision)},
                )
            return revision

        return await self.database.run("append_revision", write)

    async def report(self, report: ReplicaReport) -> None:
        """Record what this replica applied (and that it is alive)."""

        def write(session: Session) -> None:
            values = {
                "started_at": report.started_at,
                "seen_at": report.seen_at,
                "applied_revision": report.applied_revision,
                "failed_revision": report.failed_revision,
                "reason": report.reason,
                "serving": report.serving,
            }
            # One process reports from its follower and from admin changes; the two can
            # commit in either order. The report made last wins, not the one stored last,
            # so the table never shows a replica back on a revision it has left; a new
            # process (another start) always does. One conditional UPDATE, so the check and
            # the write are atomic on SQLite as on PostgreSQL.
            newer = or_(
                ReplicaRow.started_at != report.started_at,
                ReplicaRow.seen_at <= report.seen_at,
            )
            updated = session.execute(
                update(ReplicaRow)
                .where(ReplicaRow.replica_id == report.replica_id, newer)
                .values(**values)
            )
            matched = updated.rowcount  # type: ignore[attr-defined]
            if matched or session.get(ReplicaRow, report.replica_id) is not None:
                return
            session.add(ReplicaRow(replica_id=report.replica_id, **values))
            session.execute(
                delete(ReplicaRow).where(ReplicaRow.seen_at < report.seen_at - FORGET_AFTER)
            )

        await self.database.run("report_replica", write)

    async def replicas(self) -> list[ReplicaReport]:
        """Every replica heard from within a day, in the order they started."""

        def read(session: Session) -> list[ReplicaReport]:
            since = datetime.now(UTC) - FORGET_AFTER
            rows = session.scalars(
                select(ReplicaRow)
                .where(ReplicaRow.seen_at >= since)
                .order_by(ReplicaRow.started_at, ReplicaRow.replica_id)
            )
            return [_replica(row) for row in rows]

        return await self.database.run("read_replicas", read)

    async def listen(self, wake: Callable[[], None], *, retry_s: float = 5.0) -> None:
        """Call ``wake`` on every new revision, until cancelled (PostgreSQL only).

        A dedicated connection, outside the pool: it waits on the socket, so it costs the
        event loop nothing between notifications. A lost connection is opened again after
        ``retry_s``; meanwhile the caller's poll still finds every revision.
        """
        url = self.database.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        timeout = max(1, round(self.database.timeout_s))
        while True:
            try:
                # TCP keepalives: a connection cut without a reset (a partitioned network)
                # fails within about a minute and is opened again, instead of waiting forever.
                async with await psycopg.AsyncConnection.connect(
                    conninfo,
                    autocommit=True,
                    connect_timeout=timeout,
                    keepalives=1,
                    keepalives_idle=30,
                    keepalives_interval=10,
                    keepalives_count=3,
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    # A revision appended while the connection was down: poll at once.
                    wake()
                    async for _ in connection.notifies():
                        wake()
            except psycopg.Error as e:
                logger.warning(
                    "listening for model revisions failed; polling meanwhile",
                    extra={"error": describe_error(e), "retry_s": retry_s},
                )
            await asyncio.sleep(retry_s)


def _revision(row: ModelRevisionRow) -> StoredRevision:
    return StoredRevision(
        revision=row.revision,
        created_at=row.created_at,
        action=row.action,
        model_name=row.model_name,
        key_id=row.key_id,
        document=dict(row.document),
    )


def _replica(row: ReplicaRow) -> ReplicaReport:
    return ReplicaReport(
        replica_id=row.replica_id,
        started_at=row.started_at,
        seen_at=row.seen_at,
        applied_revision=row.applied_revision,
        failed_revision=row.failed_revision,
        reason=row.reason,
        serving={str(k): str(v) for k, v in dict(row.serving).items()},
    )
