"""The store's tables. Alembic's migrations (veracity/store/migrations) create and change
them; this module is what the code reads and writes through."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# JSONB on PostgreSQL (binary, indexable), JSON text on SQLite.
Document = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out (SQLite keeps no time zone, so it is put back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class PredictionRow(Base):
    """One verdict: an image, one item of a batch, or a video."""

    __tablename__ = "predictions"

    # The service's own ID (32 hex characters; a job's "<job ID>" or "<job ID>-<index>").
    # Rows stored before revision 0005 keep theirs: the request ID, "<request ID>-<index>".
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    # The request that made it (a client's X-Request-ID, or one the service gave): for
    # correlation only, shared by a batch's items and by a client's retries, never unique.
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The key's ID (a digest prefix, never the key); None when auth is disabled.
    key_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # image | video | batch_item | shadow
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    # 256-bit pHash in hex (images only; None for videos and unreadable inputs).
    perceptual_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    media_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(100))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    calibration_version: Mapped[str | None] = mapped_column(String(100))
    fake_prob: Mapped[float | None] = mapped_column(Float)
    real_prob: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(Document)  # reason codes, in order
    timings_ms: Mapped[dict[str, Any]] = mapped_column(Document)
    # A video's sampled frames (timestamp, fake_prob, verdict, reasons); None for images.
    timeline: Mapped[list[Any] | None] = mapped_column(Document)
    # The answer as the client received it (less request-specific fields): what GET and
    # the exact cache return.
    response: Mapped[dict[str, Any]] = mapped_column(Document)
    # SHA-256 over the input's digest, the model's weights and calibration, the verdict
    # policy and the request's options: equal keys give equal answers.
    cache_key: Mapped[str] = mapped_column(String(64))
    # The prediction whose stored answer this one repeated (an exact-cache hit).
    cached_from: Mapped[str | None] = mapped_column(String(80))
    # A shadow version's score of the same input: the prediction it shadowed (not listed
    # unless asked for; never answered to the client).
    shadow_of: Mapped[str | None] = mapped_column(String(80), index=True)

    __table_args__ = (
        # Listing: a key's own predictions (or all, for admins), newest first.
        Index("ix_predictions_key_created", "key_id", "created_at", "id"),
        Index("ix_predictions_created", "created_at", "id"),
        # The exact cache: a key's latest answer is the last entry of its run in the index
        # (repeated uploads add rows under the same key, so "latest" must not mean a sort).
        Index("ix_predictions_cache_key_created", "cache_key", "created_at"),
    )


class FeedbackRow(Base):
    """A reviewer's ground truth for a prediction (the latest one is shown beside it)."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(
        String(80), ForeignKey("predictions.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(16))  # real | fake
    note: Mapped[str | None] = mapped_column(Text)
    reviewer_key_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobRow(Base):
    """An asynchronous analysis (a long video or a large batch): queued, running, done or
    failed. A running job holds a lease; one whose lease ran out (its process died) is
    claimed again."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))  # the request that created it
    key_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # video | batch
    status: Mapped[str] = mapped_column(String(16))  # queued | running | done | failed
    params: Mapped[dict[str, Any]] = mapped_column(Document)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[dict[str, Any] | None] = mapped_column(Document)
    error: Mapped[dict[str, Any] | None] = mapped_column(Document)  # {code, message}
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # pending | delivered | failed; None without a webhook.
    webhook_status: Mapped[str | None] = mapped_column(String(16))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    webhook_error: Mapped[str | None] = mapped_column(Text)
    # SHA-256 over the creating key's ID and its Idempotency-Key header: a repeated
    # creation finds this job instead of making another. None without the header.
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    # The W3C traceparent of the request that created it: the job's run and its webhook
    # continue that trace, on whichever replica runs them. None when tracing was off.
    traceparent: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_webhook_due", "webhook_status", "webhook_next_at"),
        Index("ix_jobs_idempotency_key", "idempotency_key", unique=True),
    )


class JobInputRow(Base):
    """A job's uploaded file(s), kept in the database so that any replica can run the job
    and a restart loses nothing; removed when the job ends."""

    __tablename__ = "job_inputs"

    job_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str | None] = mapped_column(Text)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ModelRevisionRow(Base):
    """One revision of the models' desired state (routes and warm versions), written by an
    admin change on any replica; every replica applies the latest. Never updated: the rows
    are the lifecycle's history."""

    __tablename__ = "model_revisions"

    # 1, 2, 3...: the primary key is the compare-and-set, two changes made against the same
    # revision cannot both insert the next one.
    revision: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(16))  # promote | rollback | traffic | load ...
    model_name: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[str | None] = mapped_column(String(64))  # the admin key's ID
    document: Mapped[dict[str, Any]] = mapped_column(Document)


class ReplicaRow(Base):
    """What one replica last reported: the revision it applied, whether applying the latest
    failed (and why), and the versions it serves."""

    __tablename__ = "replicas"

    replica_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    applied_revision: Mapped[int] = mapped_column(Integer)
    failed_revision: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    serving: Mapped[dict[str, Any]] = mapped_column(Document)  # model -> version
