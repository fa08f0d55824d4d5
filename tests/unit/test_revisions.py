"""The models' desired state in the store: revisions appended by compare-and-set, replica
reports, and (PostgreSQL) a notification for every revision."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from veracity.errors import RevisionConflictError
from veracity.serving.desired import DesiredState
from veracity.serving.traffic import RouteSpec
from veracity.store.database import (
    Database,
    create_database_engine,
    prepare_database,
    resolve_database_url,
)
from veracity.store.revisions import ReplicaReport, RevisionLog


def open_log(url: str, tmp_path: Path) -> RevisionLog:
    engine = create_database_engine(resolve_database_url(url, tmp_path), timeout_s=10)
    prepare_database(engine, migrate=True)
    return RevisionLog(Database(engine, timeout_s=10))


def test_the_desired_state_survives_its_document() -> None:
    desired = DesiredState(
        7,
        {"tiny": RouteSpec("2", previous="1", canary="3", canary_percent=12.5, shadow="4")},
        {"tiny": frozenset({"5"}), "other": frozenset({"1"})},
    )
    again = DesiredState.from_document(7, desired.to_document())
    assert again == desired
    assert again.needs("tiny") == {"2", "3", "4", "5"}
    assert again.needs("other") == {"1"}
    assert again.with_warm("other", frozenset()).warm == {"tiny": frozenset({"5"})}


def test_one_of_two_changes_against_the_same_revision_is_stored(
    database_url: str, tmp_path: Path
) -> None:
    log = open_log(database_url, tmp_path)

    async def scenario() -> None:
        assert await log.latest() is None
        first = await log.append(0, {"models": {}}, action="promote", model="m", key_id="k1")
        assert first == 1
        with pytest.raises(RevisionConflictError, match="stored as revision 1 first"):
            await log.append(0, {"models": {"x": 1}}, action="promote", model="m", key_id="k2")
        # Racing: both made against revision 1, at once.
        outcomes = await asyncio.gather(
            *(log.append(1, {"n": n}, action="traffic", model="m", key_id=None) for n in range(2)),
            return_exceptions=True,
        )
        assert sorted(type(o).__name__ for o in outcomes) == ["RevisionConflictError", "int"]
        latest = await log.latest()
        assert latest is not None
        assert latest.revision == 2
        assert latest.document in ({"n": 0}, {"n": 1})
        assert (latest.action, latest.model_name) == ("traffic", "m")

    try:
        asyncio.run(scenario())
    finally:
        log.database.close()


def test_replicas_report_and_long_silent_ones_are_forgotten(
    database_url: str, tmp_path: Path
) -> None:
    log = open_log(database_url, tmp_path)
    now = datetime.now(UTC)

    def report(name: str, seen: datetime, applied: int) -> ReplicaReport:
        return ReplicaReport(name, seen, seen, applied, None, None, {"tiny": "1"})

    async def scenario() -> None:
        await log.report(report("old", now - timedelta(days=2), 0))
        await log.report(report("b", now - timedelta(seconds=1), 1))
        await log.report(report("a", now - timedelta(seconds=2), 0))
        assert [r.replica_id for r in await log.replicas()] == ["a", "b"]
        failed = ReplicaReport("a", now, now, 1, 2, "tiny/3 does not load", {"tiny": "2"})
        await log.report(failed)
        replicas = {r.replica_id: r for r in await log.replicas()}
        a, b = replicas["a"], replicas["b"]
        assert (a.applied_revision, a.failed_revision, a.reason) == (1, 2, "tiny/3 does not load")
        assert a.serving == {"tiny": "2"}
        assert b.applied_revision == 1
        # A report made before the one stored, committing after it (the follower's and an
        # admin change's, in either order), changes nothing.
        late = ReplicaReport(
            "b",
            now - timedelta(seconds=1),
            now - timedelta(seconds=3),
            0,
            None,
            None,
            {"tiny": "0"},
        )
        await log.report(late)
        b = {r.replica_id: r for r in await log.replicas()}["b"]
        assert (b.applied_revision, b.serving) == (1, {"tiny": "1"})
        # A restarted process (another start) reports afresh, whatever its clock says.
        restarted = ReplicaReport(
            "b", now, now - timedelta(seconds=3), 0, None, None, {"tiny": "0"}
        )
        await log.report(restarted)
        b = {r.replica_id: r for r in await log.replicas()}["b"]
        assert (b.applied_revision, b.serving) == (0, {"tiny": "0"})

    try:
        asyncio.run(scenario())
    finally:
        log.database.close()


def test_every_listening_replica_is_woken_by_a_new_revision(
    postgres_server, tmp_path: Path
) -> None:
    url = postgres_server.create_database("revisions_listen")
    log = open_log(url, tmp_path)

    async def scenario() -> None:
        woken = asyncio.Event()
        calls = 0

        def wake() -> None:
            nonlocal calls
            calls += 1
            if calls > 1:  # the first call is the catch-up one, on connecting
                woken.set()

        listener = asyncio.create_task(log.listen(wake))
        try:
            async with asyncio.timeout(30):
                while calls == 0:
                    await asyncio.sleep(0.05)
                await log.append(0, {"models": {}}, action="load", model="m", key_id=None)
                await woken.wait()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    assert log.notifies
    try:
        asyncio.run(scenario())
    finally:
        log.database.close()
