"""The job queue on SQLite and a real PostgreSQL: each job claimed by one worker, a dead
worker's job claimed again, its result recorded once, a job that never finishes given up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from veracity.callers import Caller
from veracity.jobs.queue import JobQueue
from veracity.jobs.records import JobInput
from veracity.store.database import (
    Database,
    create_database_engine,
    resolve_database_url,
    upgrade_database,
)
from veracity.store.schema import JobInputRow, JobRow, PredictionRow

CALLER = Caller(key_id="abcd1234", admin=False)


def open_queue(database_url: str, tmp_path, *, lease_s: float = 60, max_attempts: int = 3):
    engine = create_database_engine(resolve_database_url(database_url, tmp_path), timeout_s=5)
    upgrade_database(engine)
    database = Database(engine, timeout_s=10)
    return database, JobQueue(database, lease_s=lease_s, max_attempts=max_attempts)


async def enqueue(queue: JobQueue, job_id: str) -> None:
    await queue.enqueue(
        job_id=job_id,
        request_id=f"req-{job_id}",
        caller=CALLER,
        kind="batch",
        params={"robustness_check": None},
        inputs=[JobInput("a.jpg", b"bytes of " + job_id.encode())],
        webhook_url=None,
    )


def row(prediction_id: str) -> PredictionRow:
    return PredictionRow(
        id=prediction_id,
        request_id="r",
        created_at=datetime.now(UTC),
        key_id=CALLER.key_id,
        kind="batch_item",
        input_sha256="0" * 64,
        media_type="image/jpeg",
        size_bytes=1,
        model_name="m",
        model_version="1",
        weights_sha256="0" * 64,
        calibration_version=None,
        fake_prob=0.5,
        real_prob=0.5,
        verdict="inconclusive",
        reasons=[],
        timings_ms={},
        timeline=None,
        response={},
        cache_key="k" + prediction_id,
        cached_from=None,
    )


def test_concurrent_workers_claim_each_job_exactly_once(database_url: str, tmp_path) -> None:
    database, queue = open_queue(database_url, tmp_path)

    async def scenario() -> list[str]:
        for i in range(12):
            await enqueue(queue, f"job{i:02d}")
        claimed: list[str] = []

        async def worker(name: str) -> None:
            while (got := await queue.claim(name)) is not None:
                job, inputs = got
                assert inputs == [JobInput("a.jpg", b"bytes of " + job.id.encode())]
                claimed.append(job.id)

        await asyncio.gather(*(worker(f"w{n}") for n in range(4)))
        return claimed

    try:
        claimed = asyncio.run(scenario())
        assert sorted(claimed) == [f"job{i:02d}" for i in range(12)]  # each once
    finally:
        database.close()


def test_a_dead_workers_job_is_claimed_again_and_recorded_once(database_url: str, tmp_path) -> None:
    database, queue = open_queue(database_url, tmp_path)

    async def scenario() -> None:
        await enqueue(queue, "job")
        first = await queue.claim("dead-worker")
        assert first is not None
        assert await queue.claim("live-worker") is None  # its lease holds
        # The dead worker's lease runs out.
        await database.run(
            "test",
            lambda s: s.execute(
                update(JobRow).values(lease_until=datetime(2000, 1, 1, tzinfo=UTC))
            ),
        )
        second = await queue.claim("live-worker")
        assert second is not None
        assert second[0].attempts == 2
        assert second[1] == first[1]  # the inputs are still there
        assert await queue.finish(
            "job", "live-worker", result={"ok": 1}, error=None, rows=[row("job-0")]
        )
        # The first worker wakes up late: its claim is gone, nothing is recorded twice.
        assert not await queue.finish(
            "job", "dead-worker", result={"ok": 2}, error=None, rows=[row("job-0")]
        )
        assert not await queue.renew("job", "dead-worker")
        job = await queue.get("job", CALLER)
        assert (job.status, job.result) == ("done", {"ok": 1})

        def counts(session) -> tuple[int, int]:
            predictions = session.scalar(select(func.count()).select_from(PredictionRow))
            inputs = session.scalar(select(func.count()).select_from(JobInputRow))
            return predictions, inputs

        assert await database.run("test", counts) == (1, 0)  # one record; inputs removed

    try:
        asyncio.run(scenario())
    finally:
        database.close()


def test_a_job_that_never_finishes_is_given_up(database_url: str, tmp_path) -> None:
    database, queue = open_queue(database_url, tmp_path, max_attempts=2)

    async def expire() -> None:
        await database.run(
            "test",
            lambda s: s.execute(
                update(JobRow).values(lease_until=datetime(2000, 1, 1, tzinfo=UTC))
            ),
        )

    async def scenario() -> None:
        await enqueue(queue, "poison")
        for attempt in (1, 2):
            claimed = await queue.claim(f"worker-{attempt}")
            assert claimed is not None
            await expire()  # the process died while running it
        assert await queue.exhausted("worker-3") == ["poison"]
        assert await queue.claim("worker-3") is None
        job = await queue.get("poison", CALLER)
        assert job.status == "failed"
        assert job.error is not None
        assert job.error["code"] == "job_attempts_exhausted"

    try:
        asyncio.run(scenario())
    finally:
        database.close()


def test_a_released_job_keeps_its_attempts_and_the_depth_is_reported(
    database_url: str, tmp_path
) -> None:
    database, queue = open_queue(database_url, tmp_path)

    async def scenario() -> None:
        await enqueue(queue, "a")
        await enqueue(queue, "b")
        depth = await queue.depth()
        assert (depth.queued, depth.running) == (2, 0)
        assert depth.oldest_queued_s >= 0
        claimed = await queue.claim("w")
        assert claimed is not None
        assert (await queue.depth()).running == 1
        await queue.release(claimed[0].id, "w")  # the service was busy
        again = await queue.claim("w")
        assert again is not None
        assert again[0].id == claimed[0].id
        assert again[0].attempts == 1

    try:
        asyncio.run(scenario())
    finally:
        database.close()
