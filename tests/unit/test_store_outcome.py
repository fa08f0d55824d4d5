"""A store deadline is not a rollback: on SQLite and a real PostgreSQL, an answer of
"nothing was changed" means nothing was, a commit under way at the deadline is answered
by its outcome, a repeated job creation with an Idempotency-Key finds the first job, and
migrating to revision 0005 keeps every stored prediction's ID."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

from veracity.callers import Caller
from veracity.errors import BadRequestError, StoreOutcomeUnknownError, StoreUnavailableError
from veracity.jobs.queue import JobQueue
from veracity.jobs.records import JobInput
from veracity.store.database import (
    Database,
    create_database_engine,
    resolve_database_url,
    upgrade_database,
)
from veracity.store.predictions import PredictionStore
from veracity.store.schema import JobRow, PredictionRow

CALLER = Caller(key_id="abcd1234", admin=False)
OTHER = Caller(key_id="ef567890", admin=False)
DEADLINE_S = 0.5


def open_store(database_url: str, tmp_path, *, migrate: bool = True) -> PredictionStore:
    engine = create_database_engine(resolve_database_url(database_url, tmp_path), timeout_s=5)
    if migrate:
        upgrade_database(engine)
    return PredictionStore(Database(engine, timeout_s=DEADLINE_S))


def slow_statements(store: PredictionStore, table: str, seconds: float) -> None:
    """Every INSERT into ``table`` takes ``seconds`` longer (a large upload, a busy disk)."""

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()}"):
            time.sleep(seconds)

    event.listen(store.database.engine, "before_cursor_execute", before)


def count_jobs(store: PredictionStore) -> int:
    with store.database.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(JobRow)) or 0)


async def enqueue(queue: JobQueue, job_id: str, caller: Caller = CALLER, **kwargs: Any) -> Any:
    values: dict[str, Any] = {
        "job_id": job_id,
        "request_id": "req",
        "caller": caller,
        "kind": "batch",
        "params": {"robustness_check": None},
        "inputs": [JobInput("a.jpg", b"x" * 1000)],
        "webhook_url": None,
    }
    return await queue.enqueue(**(values | kwargs))


def test_a_job_past_its_deadline_is_not_created_when_the_answer_says_so(
    database_url: str, tmp_path
) -> None:
    store = open_store(database_url, tmp_path)
    queue = JobQueue(store.database, lease_s=60, max_attempts=3)
    # Writing the inputs outlasts the deadline (the large concurrent uploads).
    slow_statements(store, "job_inputs", DEADLINE_S * 2)
    try:
        with pytest.raises(StoreUnavailableError, match="nothing was changed"):
            asyncio.run(enqueue(queue, "late"))
        time.sleep(DEADLINE_S * 3)  # the store's thread has long finished
        assert count_jobs(store) == 0
    finally:
        store.database.close()


def test_a_commit_under_way_at_the_deadline_is_answered_by_its_outcome(
    database_url: str, tmp_path
) -> None:
    store = open_store(database_url, tmp_path)
    queue = JobQueue(store.database, lease_s=60, max_attempts=3)

    def slow_commit(conn: Any) -> None:
        time.sleep(DEADLINE_S * 1.5)

    event.listen(store.database.engine, "commit", slow_commit)
    try:
        job = asyncio.run(enqueue(queue, "committed"))
        assert job.id == "committed"
        assert count_jobs(store) == 1
    finally:
        store.database.close()


def test_a_commit_that_fails_once_begun_is_not_called_unchanged(
    database_url: str, tmp_path
) -> None:
    """A connection lost during COMMIT may have been applied first: the answer must not say
    that nothing was changed."""
    store = open_store(database_url, tmp_path)
    queue = JobQueue(store.database, lease_s=60, max_attempts=3)

    def lost(conn: Any) -> None:
        raise OSError("connection lost during COMMIT")

    event.listen(store.database.engine, "commit", lost)
    try:
        with pytest.raises(StoreOutcomeUnknownError, match="may or may not have been applied"):
            asyncio.run(enqueue(queue, "unknown"))
    finally:
        store.database.close()


def test_an_idempotency_key_makes_a_repeated_creation_find_the_first_job(
    database_url: str, tmp_path
) -> None:
    store = open_store(database_url, tmp_path)
    queue = JobQueue(store.database, lease_s=60, max_attempts=3)

    async def scenario() -> None:
        first = await enqueue(queue, "one", idempotency_key="k-1")
        again = await enqueue(queue, "two", idempotency_key="k-1")
        assert again.id == first.id == "one"
        # Another API key's equal header is its own.
        theirs = await enqueue(queue, "three", caller=OTHER, idempotency_key="k-1")
        assert theirs.id == "three"
        with pytest.raises(BadRequestError, match="used for a batch job"):
            await enqueue(queue, "four", idempotency_key="k-1", kind="video")
        # Sent twice at once: one job.
        both = await asyncio.gather(
            enqueue(queue, "five", idempotency_key="k-2"),
            enqueue(queue, "six", idempotency_key="k-2"),
        )
        assert both[0].id == both[1].id

    try:
        asyncio.run(scenario())
        assert count_jobs(store) == 3
    finally:
        store.database.close()


def test_migrating_to_0005_keeps_every_prediction_id(database_url: str, tmp_path) -> None:
    store = open_store(database_url, tmp_path, migrate=False)
    try:
        upgrade_database(store.database.engine, "0004")
        old = {
            "id": "client-chosen.id-0",
            "request_id": "client-chosen.id",
            "created_at": datetime.now(UTC),
            "key_id": CALLER.key_id,
            "kind": "batch_item",
            "input_sha256": "0" * 64,
            "media_type": "image/jpeg",
            "size_bytes": 1,
            "model_name": "m",
            "model_version": "1",
            "weights_sha256": "0" * 64,
            "fake_prob": 0.5,
            "real_prob": 0.5,
            "verdict": "inconclusive",
            "reasons": [],
            "timings_ms": {},
            "response": {},
            "cache_key": "k",
        }
        with store.database.engine.begin() as connection:
            connection.execute(insert(PredictionRow.__table__).values(**old))
        upgrade_database(store.database.engine)
        stored = asyncio.run(store.get("client-chosen.id-0", CALLER)).row
        assert (stored.id, stored.request_id) == ("client-chosen.id-0", "client-chosen.id")
    finally:
        store.database.close()
