"""Recording verdicts and reading them back: the store the routes talk to.

Each operation runs through ``Database.run``, under the store's deadline. Recording a
verdict never raises: the answer goes out with ``stored: false``, the failure is logged and
counted. Reads and changes that fail answer 503 ``store_unavailable`` and change nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session, defer

from veracity.callers import Caller
from veracity.errors import (
    BadRequestError,
    NotFoundError,
    StoreUnavailableError,
)
from veracity.store.database import Database
from veracity.store.grouped import GroupWriter
from veracity.store.schema import FeedbackRow, PredictionRow

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
    reviewed: bool | None = None  # with (True) or without (False) any reviewer feedback
    oldest_first: bool = False  # a review queue reads oldest first; the history newest first


@dataclass(frozen=True)
class Page:
    items: list[StoredPrediction]
    next_cursor: str | None


def new_prediction_id() -> str:
    """A prediction's ID: the service's own, never a client's request ID (which any key may
    choose, and choose again)."""
    return uuid.uuid4().hex


def cache_key(input_sha256: str, scope: dict[str, Any]) -> str:
    """Equal for equal bytes answered by the same model, calibration, policy and options."""
    canonical = json.dumps({"input": input_sha256, **scope}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(created_at: datetime, prediction_id: str, *, oldest_first: bool = False) -> str:
    # The order rides in the cursor (older cursors have none: newest first), so a cursor
    # is never read in the other direction, which would skip or repeat items silently.
    fields = [created_at.isoformat(), prediction_id] + (["oldest"] if oldest_first else [])
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, oldest_first: bool = False) -> tuple[datetime, str]:
    """Raises BadRequestError for anything ``encode_cursor`` did not make for this order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, prediction_id, *order = json.loads(raw)
        created = datetime.fromisoformat(when)
        if created.tzinfo is None or not isinstance(prediction_id, str):
            raise ValueError(cursor)
        if order not in ([], ["oldest"]):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as e:
        raise BadRequestError(
            "the cursor is not one this service gave; pass next_cursor from the previous "
            "page unchanged, or leave it out to start from the newest"
        ) from e
    if (order == ["oldest"]) != oldest_first:
        raise BadRequestError(
            "the cursor was given for the other order; pass the same order as for the "
            "page it came from, or leave the cursor out to start again"
        )
    return created, prediction_id


class PredictionStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._metrics = database.metrics
        self._records = GroupWriter(self._write)

    async def record(self, rows: list[PredictionRow]) -> bool:
        """Store verdicts; False (logged and counted) where the database failed. Rows
        recorded at the same moment share one transaction (``veracity.store.grouped``)."""
        if not rows:
            return True
        return await self._records.submit(rows)

    async def _write(self, rows: list[PredictionRow]) -> bool:
        def work(session: Session) -> None:
            session.add_all(rows)

        try:
            await self.database.run("record", work)
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
            # Each key's latest row only, however often the bytes were sent: one short read
            # per key from the end of its run in (cache_key, created_at). A join with a
            # grouped subquery read the same, but PostgreSQL planned it as a scan of the
            # caller's whole table: under `make overload` its server took 1.1 of the 2 cores
            # and the accepted p99 passed the deadline; now 0.02 cores.
            found = {}
            for key in wanted:
                row = session.scalars(
                    select(PredictionRow)
                    .where(PredictionRow.cache_key == key, mine)
                    .order_by(PredictionRow.created_at.desc())
                    .limit(1)
                ).first()
                if row is not None:
                    found[key] = row
            return found

        try:
            found = await self.database.run("cache_lookup", work)
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

        return await self.database.run("similarity_load", work)

    async def with_hashes(
        self, hashes: list[str], caller: Caller, *, limit: int
    ) -> list[StoredPrediction]:
        """The newest predictions the caller may see whose perceptual hash is one of
        ``hashes``: their summary columns only (reading a deferred one raises)."""

        def work(session: Session) -> list[StoredPrediction]:
            # Not the stored answers: decoding every match's JSON was most of a lookup's
            # cost, for a summary that needs none of it.
            query = (
                select(PredictionRow)
                .options(
                    defer(PredictionRow.response, raiseload=True),
                    defer(PredictionRow.timeline, raiseload=True),
                    defer(PredictionRow.timings_ms, raiseload=True),
                )
                .where(PredictionRow.perceptual_hash.in_(hashes))
            )
            if not caller.admin:
                query = query.where(PredictionRow.key_id == caller.key_id)
            query = query.order_by(PredictionRow.created_at.desc()).limit(limit)
            return _with_reviews(session, list(session.scalars(query)))

        return await self.database.run("similarity_lookup", work)

    async def get(self, prediction_id: str, viewer: Caller) -> StoredPrediction:
        """Raises NotFoundError (also for another key's prediction), StoreUnavailableError."""

        def work(session: Session) -> StoredPrediction:
            row = session.get(PredictionRow, prediction_id)
            if row is None or not may_see(viewer, row.key_id):
                raise _not_found(prediction_id)
            return _with_reviews(session, [row])[0]

        return await self.database.run("get", work)

    async def list(
        self,
        viewer: Caller,
        filters: PredictionFilter,
        *,
        cursor: str | None,
        limit: int,
    ) -> Page:
        """Newest first (or oldest first), ``limit`` at a time; ``next_cursor`` continues
        where a page ended."""
        oldest = filters.oldest_first
        after = decode_cursor(cursor, oldest_first=oldest) if cursor else None

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
            if filters.reviewed is not None:
                has_review = (
                    select(FeedbackRow.id)
                    .where(FeedbackRow.prediction_id == PredictionRow.id)
                    .exists()
                )
                query = query.where(has_review if filters.reviewed else ~has_review)
            if after is not None:
                created, last_id = after
                if oldest:
                    later = and_(PredictionRow.created_at == created, PredictionRow.id > last_id)
                    query = query.where(or_(PredictionRow.created_at > created, later))
                else:
                    earlier = and_(PredictionRow.created_at == created, PredictionRow.id < last_id)
                    query = query.where(or_(PredictionRow.created_at < created, earlier))
            if oldest:
                query = query.order_by(PredictionRow.created_at.asc(), PredictionRow.id.asc())
            else:
                query = query.order_by(PredictionRow.created_at.desc(), PredictionRow.id.desc())
            rows = list(session.scalars(query.limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            following = (
                encode_cursor(rows[-1].created_at, rows[-1].id, oldest_first=oldest)
                if more
                else None
            )
            return Page(items=_with_reviews(session, rows), next_cursor=following)

        return await self.database.run("list", work)

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

        return await self.database.run("feedback", work)

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

        return await self.database.run("delete", work)


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
