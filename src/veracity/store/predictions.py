"""Recording verdicts and reading them back: the store the routes talk to.

SQLAlchemy's sessions are synchronous; each operation runs on the store's own small thread
pool under a deadline, so a slow or unreachable database never blocks the event loop and
never holds a request longer than ``timeout_s`` (bar a commit already under way). Recording
a verdict never raises: the answer goes out with ``stored: false``, the failure is logged
and counted. Reads and changes that fail answer 503 ``store_unavailable`` and change nothing.

A deadline is not a rollback: the thread goes on after the request stops waiting. So an
operation commits only if its deadline has not passed when it is ready to; past that point
the caller waits for the commit's outcome and answers by it (or, when the database does not
confirm it either, says the outcome is unknown).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine, and_, delete, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from veracity.callers import Caller
from veracity.errors import (
    BadRequestError,
    NotFoundError,
    StoreOutcomeUnknownError,
    StoreUnavailableError,
)
from veracity.metrics import ServiceMetrics
from veracity.store.database import describe_error
from veracity.store.schema import FeedbackRow, PredictionRow

logger = logging.getLogger("veracity.store")

T = TypeVar("T")
Kind = Literal["image", "video", "batch_item", "shadow"]
Label = Literal["real", "fake"]


@dataclass(frozen=True)
class Review:
    label: Label
    note: str | None
    reviewer_key_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class StoredPrediction:
    row: PredictionRow
    review: Review | None  # the latest reviewer feedback
    reviews: int


@dataclass(frozen=True)
class PredictionFilter:
    since: datetime | None = None
    until: datetime | None = None
    verdict: str | None = None
    model_version: str | None = None
    key_id: str | None = None  # admins only: one key's predictions
    request_id: str | None = None  # the predictions a request made (its X-Request-ID)
    shadow_of: str | None = None  # a prediction's shadow scores (otherwise none are listed)


@dataclass(frozen=True)
class Page:
    items: list[StoredPrediction]
    next_cursor: str | None


class _AbandonedError(Exception):
    """Raised in the store's thread to roll back an operation whose caller stopped waiting."""


class _Attempt:
    """Who decides an operation's fate at its deadline: the thread, by beginning to commit,
    or the caller, by abandoning it first (it is then rolled back)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._committing = False

    def begin_commit(self) -> bool:
        with self._lock:
            self._committing = not self._abandoned
            return self._committing

    def abandon(self) -> bool:
        """True when the operation will not commit; False when its commit has begun."""
        with self._lock:
            self._abandoned = not self._committing
            return self._abandoned

    @property
    def committing(self) -> bool:
        with self._lock:
            return self._committing


def _outcome_unknown(what: str) -> StoreOutcomeUnknownError:
    return StoreOutcomeUnknownError(
        f"the results store {what}: it may or may not have been applied; check before "
        "repeating it (a job created with an Idempotency-Key can be sent again with the "
        "same key)"
    )


def _retrieve(outcome: asyncio.Future[Any]) -> None:
    if not outcome.cancelled():
        outcome.exception()


def new_prediction_id() -> str:
    """A prediction's ID: the service's own, never a client's request ID (which any key may
    choose, and choose again)."""
    return uuid.uuid4().hex


def cache_key(input_sha256: str, scope: dict[str, Any]) -> str:
    """Equal for equal bytes answered by the same model, calibration, policy and options."""
    canonical = json.dumps({"input": input_sha256, **scope}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(created_at: datetime, prediction_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), prediction_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises BadRequestError for anything ``encode_cursor`` did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, prediction_id = json.loads(raw)
        created = datetime.fromisoformat(when)
        if created.tzinfo is None or not isinstance(prediction_id, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as e:
        raise BadRequestError(
            "the cursor is not one this service gave; pass next_cursor from the previous "
            "page unchanged, or leave it out to start from the newest"
        ) from e
    return created, prediction_id


class PredictionStore:
    def __init__(
        self, engine: Engine, *, timeout_s: float, metrics: ServiceMetrics | None = None
    ) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self._metrics = metrics
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        size = engine.pool.size() if hasattr(engine.pool, "size") else 4
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="veracity-store")

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()

    async def run(self, operation: str, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a transaction on the store's threads within the deadline.

        Raises:
            StoreUnavailableError: the database failed or did not answer in time; nothing
                was changed.
            StoreOutcomeUnknownError: the commit had begun at the deadline and the database
                did not confirm it within a second deadline; it may have been applied.
        """
        attempt = _Attempt()

        def in_session() -> T:
            with self._sessions.begin() as session:
                result = work(session)
                # The slow part (writing the rows, waiting for locks) before the point of no
                # return, so that a deadline passed meanwhile still rolls everything back.
                session.flush()
                if not attempt.begin_commit():
                    raise _AbandonedError(operation)
            return result

        started = time.perf_counter()
        future = self._executor.submit(in_session)
        outcome = asyncio.wrap_future(future)
        # Read here whatever happens, so an abandoned attempt's error is never reported as
        # "never retrieved".
        outcome.add_done_callback(_retrieve)
        try:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await asyncio.shield(outcome)
            except TimeoutError:
                # Never started, or not yet committing: it will change nothing.
                if future.cancel() or attempt.abandon():
                    raise
            except asyncio.CancelledError:
                # Nobody waits for the answer: roll back unless the commit is under way.
                if not future.cancel():
                    attempt.abandon()
                raise
            # Committing as the deadline passed: wait for what the database says.
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await asyncio.shield(outcome)
            except TimeoutError as e:
                self._failed(operation, e)
                raise _outcome_unknown(f"did not confirm {operation} in time") from e
        except (SQLAlchemyError, OSError) as e:
            self._failed(operation, e)
            if attempt.committing:
                # The COMMIT itself failed (a connection lost mid-commit, say): the database
                # may have applied it before the error, so "nothing was changed" is not known.
                raise _outcome_unknown(f"failed while committing {operation}") from e
            raise StoreUnavailableError(
                f"the results store is unavailable ({operation} failed); nothing was "
                "changed, retry shortly"
            ) from e
        except (TimeoutError, _AbandonedError) as e:
            self._failed(operation, e)
            raise StoreUnavailableError(
                f"the results store is unavailable ({operation} failed); nothing was "
                "changed, retry shortly"
            ) from e
        finally:
            if self._metrics is not None:
                self._metrics.store_seconds.labels(operation).observe(time.perf_counter() - started)

    def _failed(self, operation: str, error: BaseException) -> None:
        if self._metrics is not None:
            self._metrics.store_failures.labels(operation).inc()
        logger.error(
            "results store %s failed",
            operation,
            extra={"operation": operation, "error": describe_error(error)},
        )

    async def record(self, rows: list[PredictionRow]) -> bool:
        """Store verdicts; False (logged and counted) where the database failed."""
        if not rows:
            return True

        def work(session: Session) -> None:
            session.add_all(rows)

        try:
            await self.run("record", work)
        except StoreUnavailableError:
            return False
        return True

    async def find_cached(self, keys: list[str], owner: str | None) -> dict[str, PredictionRow]:
        """The latest stored answer for each of ``keys`` that has one among the predictions
        of the API key ``owner`` (None: auth is off); {} on a failing database (the requests
        are then answered by the model).

        Only the caller's own predictions: a hit on another key's would tell the caller that
        someone sent these bytes, and name that key's prediction in ``cached_from``.
        """
        wanted = sorted(set(keys))
        mine = PredictionRow.key_id.is_(None) if owner is None else PredictionRow.key_id == owner

        def work(session: Session) -> dict[str, PredictionRow]:
            # Only each key's latest row is read, however often the bytes were sent.
            latest = (
                select(PredictionRow.cache_key, func.max(PredictionRow.created_at).label("at"))
                .where(PredictionRow.cache_key.in_(wanted), mine)
                .group_by(PredictionRow.cache_key)
                .subquery()
            )
            query = select(PredictionRow).join(
                latest,
                and_(
                    PredictionRow.cache_key == latest.c.cache_key,
                    PredictionRow.created_at == latest.c.at,
                ),
            )
            return {row.cache_key: row for row in session.scalars(query.where(mine))}

        try:
            found = await self.run("cache_lookup", work)
        except StoreUnavailableError:
            found = {}
        if self._metrics is not None:
            self._metrics.cache_lookups.labels("hit").inc(len(found))
            self._metrics.cache_lookups.labels("miss").inc(len(wanted) - len(found))
        return found

    async def perceptual_hashes(self, since: datetime | None) -> list[tuple[str, str, datetime]]:
        """(ID, perceptual hash, created_at) of the predictions created at or after
        ``since`` (all when None), for the similarity index."""

        def work(session: Session) -> list[tuple[str, str, datetime]]:
            query = select(
                PredictionRow.id, PredictionRow.perceptual_hash, PredictionRow.created_at
            ).where(PredictionRow.perceptual_hash.is_not(None))
            if since is not None:
                query = query.where(PredictionRow.created_at >= since)
            return [(i, h, c) for i, h, c in session.execute(query) if h is not None]

        return await self.run("similarity_load", work)

    async def with_hashes(
        self, hashes: list[str], caller: Caller, *, limit: int
    ) -> list[StoredPrediction]:
        """The newest predictions the caller may see whose perceptual hash is one of
        ``hashes``."""

        def work(session: Session) -> list[StoredPrediction]:
            query = select(PredictionRow).where(PredictionRow.perceptual_hash.in_(hashes))
            if not caller.admin:
                query = query.where(PredictionRow.key_id == caller.key_id)
            query = query.order_by(PredictionRow.created_at.desc()).limit(limit)
            return _with_reviews(session, list(session.scalars(query)))

        return await self.run("similarity_lookup", work)

    async def get(self, prediction_id: str, viewer: Caller) -> StoredPrediction:
        """Raises NotFoundError (also for another key's prediction), StoreUnavailableError."""

        def work(session: Session) -> StoredPrediction:
            row = session.get(PredictionRow, prediction_id)
            if row is None or not may_see(viewer, row.key_id):
                raise _not_found(prediction_id)
            return _with_reviews(session, [row])[0]

        return await self.run("get", work)

    async def list(
        self,
        viewer: Caller,
        filters: PredictionFilter,
        *,
        cursor: str | None,
        limit: int,
    ) -> Page:
        """Newest first, ``limit`` at a time; ``next_cursor`` continues where a page ended."""
        after = decode_cursor(cursor) if cursor else None

        def work(session: Session) -> Page:
            query = select(PredictionRow)
            if not viewer.admin:
                query = query.where(PredictionRow.key_id == viewer.key_id)
            elif filters.key_id is not None:
                query = query.where(PredictionRow.key_id == filters.key_id)
            if filters.since is not None:
                query = query.where(PredictionRow.created_at >= filters.since)
            if filters.until is not None:
                query = query.where(PredictionRow.created_at < filters.until)
            if filters.verdict is not None:
                query = query.where(PredictionRow.verdict == filters.verdict)
            if filters.model_version is not None:
                query = query.where(PredictionRow.model_version == filters.model_version)
            if filters.request_id is not None:
                query = query.where(PredictionRow.request_id == filters.request_id)
            if filters.shadow_of is not None:
                query = query.where(PredictionRow.shadow_of == filters.shadow_of)
            else:
                query = query.where(PredictionRow.shadow_of.is_(None))
            if after is not None:
                created, last_id = after
                query = query.where(
                    or_(
                        PredictionRow.created_at < created,
                        and_(PredictionRow.created_at == created, PredictionRow.id < last_id),
                    )
                )
            query = query.order_by(PredictionRow.created_at.desc(), PredictionRow.id.desc())
            rows = list(session.scalars(query.limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            following = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
            return Page(items=_with_reviews(session, rows), next_cursor=following)

        return await self.run("list", work)

    async def add_feedback(
        self, prediction_id: str, viewer: Caller, *, label: Label, note: str | None
    ) -> StoredPrediction:
        """The reviewer is the calling key. Raises NotFoundError, StoreUnavailableError."""

        def work(session: Session) -> StoredPrediction:
            row = session.get(PredictionRow, prediction_id)
            if row is None or not may_see(viewer, row.key_id):
                raise _not_found(prediction_id)
            session.add(
                FeedbackRow(
                    prediction_id=prediction_id,
                    label=label,
                    note=note,
                    reviewer_key_id=viewer.key_id,
                    created_at=datetime.now(UTC),
                )
            )
            session.flush()
            return _with_reviews(session, [row])[0]

        return await self.run("feedback", work)

    async def delete(self, prediction_id: str, viewer: Caller) -> str | None:
        """Erase a prediction and its feedback; the input's SHA-256 when no other
        prediction refers to those bytes any more (their kept file can go too).

        Raises:
            NotFoundError, StoreUnavailableError.
        """

        def work(session: Session) -> str | None:
            row = session.get(PredictionRow, prediction_id)
            if row is None or not may_see(viewer, row.key_id):
                raise _not_found(prediction_id)
            # Explicitly, not only by the foreign key's cascade: SQLite enforces it only
            # with foreign_keys=ON, which a connection made by another tool may lack.
            session.execute(delete(FeedbackRow).where(FeedbackRow.prediction_id == prediction_id))
            digest = row.input_sha256
            session.delete(row)
            session.flush()
            others = session.scalar(
                select(func.count())
                .select_from(PredictionRow)
                .where(PredictionRow.input_sha256 == digest)
            )
            return digest if not others else None

        return await self.run("delete", work)


def _with_reviews(session: Session, rows: list[PredictionRow]) -> list[StoredPrediction]:
    if not rows:
        return []
    ids = [row.id for row in rows]
    counts: dict[str, int] = {
        prediction_id: count
        for prediction_id, count in session.execute(
            select(FeedbackRow.prediction_id, func.count())
            .where(FeedbackRow.prediction_id.in_(ids))
            .group_by(FeedbackRow.prediction_id)
        )
    }
    latest: dict[str, Review] = {}
    reviewed = [i for i in ids if counts.get(i)]
    if reviewed:
        query = (
            select(FeedbackRow)
            .where(FeedbackRow.prediction_id.in_(reviewed))
            .order_by(FeedbackRow.created_at, FeedbackRow.id)
        )
        for feedback in session.scalars(query):
            latest[feedback.prediction_id] = Review(
                label=feedback.label,  # type: ignore[arg-type]
                note=feedback.note,
                reviewer_key_id=feedback.reviewer_key_id,
                created_at=feedback.created_at,
            )
    return [StoredPrediction(row, latest.get(row.id), counts.get(row.id, 0)) for row in rows]


def may_see(caller: Caller, owner_key_id: str | None) -> bool:
    """A key sees what its own requests created (predictions, jobs); the admin scope sees
    everything."""
    return caller.admin or (caller.key_id is not None and owner_key_id == caller.key_id)


def _not_found(prediction_id: str) -> NotFoundError:
    shown = prediction_id if len(prediction_id) <= 80 else prediction_id[:80] + "..."
    return NotFoundError(
        f"no prediction {shown!r} for this key; IDs are the prediction_id of an answer "
        "(GET /predictions?request_id=... finds a request's), and a key sees only its own "
        "predictions"
    )
