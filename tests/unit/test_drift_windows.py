"""Drift's reads from the results store, on SQLite and a real PostgreSQL: one version's
image answers in the window (cache hits and videos left out, newest first, bounded), and
the reviewers' latest labels given in the review window, with the model's own verdict."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.unit.test_job_queue import row
from veracity.store.database import (
    Database,
    create_database_engine,
    resolve_database_url,
    upgrade_database,
)
from veracity.store.schema import FeedbackRow, PredictionRow
from veracity.store.windows import AnswerWindows

NOW = datetime.now(UTC).replace(microsecond=0)


def answer(
    pid: str,
    *,
    at: datetime,
    version: str = "1",
    verdict: str = "real",
    cached_from: str | None = None,
    kind: str = "image",
) -> PredictionRow:
    made = row(pid)
    made.created_at = at
    made.model_version = version
    made.verdict = verdict
    made.cached_from = cached_from
    made.kind = kind
    made.response = {"verdict": verdict, "fake_prob": 0.1, "quality": {"width": 8, "height": 8}}
    return made


def label(prediction_id: str, value: str, *, minutes_ago: float) -> FeedbackRow:
    return FeedbackRow(
        prediction_id=prediction_id,
        label=value,
        created_at=NOW - timedelta(minutes=minutes_ago),
    )


def test_windows_read_one_versions_answers_and_reviews(database_url: str, tmp_path) -> None:
    engine = create_database_engine(resolve_database_url(database_url, tmp_path), timeout_s=5)
    upgrade_database(engine)
    database = Database(engine, timeout_s=10)
    windows = AnswerWindows(database)
    start, end = NOW - timedelta(hours=1), NOW
    rows = [answer(f"in{i}", at=NOW - timedelta(minutes=50 - i)) for i in range(5)] + [
        answer("old", at=NOW - timedelta(hours=2)),
        answer("later", at=NOW + timedelta(minutes=1)),
        answer("cached", at=NOW - timedelta(minutes=5), cached_from="in0"),
        answer("v2", at=NOW - timedelta(minutes=5), version="2", verdict="fake"),
        answer("clip", at=NOW - timedelta(minutes=5), kind="video"),
    ]
    rows[2].response = rows[2].response | {"model_verdict": "inconclusive"}

    async def scenario():
        await database.run("seed", lambda s: s.add_all(rows))
        await database.run(
            "review",
            lambda s: s.add_all(
                [
                    label("in1", "fake", minutes_ago=9),
                    label("in1", "real", minutes_ago=8),  # the latest label counts
                    label("in2", "fake", minutes_ago=5),  # the model's own verdict is read
                    label("old", "fake", minutes_ago=1),  # an old answer, labelled now
                    label("in3", "fake", minutes_ago=90),  # labelled before the window
                ]
            ),
        )
        return (
            await windows.answers("m", "1", start, end, limit=100),
            await windows.answers("m", "1", start, end, limit=2),
            await windows.reviews("m", "1", start, end, limit=100),
        )

    try:
        everything, newest, reviews = asyncio.run(scenario())
    finally:
        database.close()
    assert len(everything) == 5  # not the old, the later, the cache hit, version 2, the video
    assert {a.media_type for a in everything} == {"image/jpeg"}
    assert everything[0].answer["verdict"] == "real"
    assert len(newest) == 2
    assert sorted(reviews) == [("inconclusive", "fake"), ("real", "fake"), ("real", "real")]
