"""Three real server processes on one real PostgreSQL act as one service: an admin change
made on any replica is served by all within the bound, canary shares hold over all of them,
two admins racing get one winner and a 409, a version that does not load on one replica is
reported there while it keeps serving, and a replica down during a change comes back on it.

The tests run in order on the same replicas (each starts from the state the one before
left): starting three servers costs more than every check together.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import jpeg_bytes
from tests.conftest import write_tiny_checkpoint
from tests.integration.conftest import API_KEY, Server, start_server

ADMIN_KEY = "replicas-admin-key-0123456789abcdef"
USER = {"X-API-Key": API_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}
# The bound a change reaches every replica within: the sync interval below (notifications
# make it immediate when they arrive) plus a version's load and warm-up on a busy machine.
SYNC_S = 1.0
BOUND_S = 30.0
IMAGE = jpeg_bytes(64, 64, seed=3)


def _repository(root: Path, *, corrupt: str | None = None) -> Path:
    for version, seed in (("1", 0), ("2", 1), ("3", 2)):
        write_tiny_checkpoint(root / "tiny" / version / "model.safetensors", seed=seed)
    if corrupt is not None:
        weights = root / "tiny" / corrupt / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF  # its weights no longer match their SHA-256 on this replica
        weights.write_bytes(bytes(data))
    return root


@dataclass
class Fleet:
    tmp: pytest.TempPathFactory
    checkpoint: Path
    database_url: str
    repositories: dict[str, Path]
    servers: dict[str, Server]

    def start(self, name: str) -> Server:
        server = start_server(
            self.tmp.mktemp(f"replica-{name}"),
            self.checkpoint,
            VERACITY_DATABASE_URL=self.database_url,
            VERACITY_MODEL_REPOSITORY=str(self.repositories[name]),
            VERACITY_DEFAULT_MODEL="tiny:1",
            VERACITY_ADMIN_API_KEYS=ADMIN_KEY,
            VERACITY_BACKEND="torch",
            VERACITY_REPLICA_ID=f"replica-{name}",
            VERACITY_MODEL_SYNC_S=str(SYNC_S),
            VERACITY_SEEN_BEFORE_ENABLED="false",
            VERACITY_CACHE_ENABLED="false",
        )
        self.servers[name] = server
        return server

    def url(self, name: str) -> str:
        return self.servers[name].base_url


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, postgres_server
) -> Iterator[Fleet]:
    shared = _repository(tmp_path_factory.mktemp("models"))
    # Replica c's copy of the repository has a corrupt tiny/3 (a volume out of step).
    own = _repository(tmp_path_factory.mktemp("models-c"), corrupt="3")
    fleet = Fleet(
        tmp_path_factory,
        tiny_checkpoint,
        postgres_server.create_database("replicas"),
        {"a": shared, "b": shared, "c": own, "d": shared},
        {},
    )
    try:
        fleet.start("a").wait_ready()  # the first one migrates the database
        for name in ("b", "c"):
            fleet.start(name)
        for name in ("b", "c"):
            fleet.servers[name].wait_ready()
        yield fleet
    finally:
        for server in fleet.servers.values():
            server.stop()
        shutil.rmtree(own, ignore_errors=True)


def served_version(base_url: str) -> str:
    response = httpx.post(
        f"{base_url}/infer",
        files={"file": ("x.jpg", IMAGE, "image/jpeg")},
        headers=USER,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["model_version"])


def listing(base_url: str) -> dict:
    response = httpx.get(f"{base_url}/models", headers=USER, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def admin(method: str, base_url: str, path: str, **kwargs) -> httpx.Response:
    headers = ADMIN | kwargs.pop("headers", {})
    return httpx.request(method, f"{base_url}{path}", headers=headers, timeout=120, **kwargs)


def wait_until_served(fleet: Fleet, names: tuple[str, ...], version: str) -> float:
    """Seconds until every replica named answers on ``version`` (fails past the bound)."""
    started = time.monotonic()
    waiting = set(names)
    while waiting:
        waiting = {n for n in waiting if served_version(fleet.url(n)) != version}
        elapsed = time.monotonic() - started
        assert elapsed < BOUND_S, f"{sorted(waiting)} still not on {version} after {elapsed:.1f} s"
        if waiting:
            time.sleep(0.1)
    return time.monotonic() - started


def replicas_by_id(base_url: str) -> dict[str, dict]:
    return {r["replica_id"]: r for r in listing(base_url)["replicas"]}


def wait_until_current(fleet: Fleet, names: tuple[str, ...]) -> dict:
    """The listing once every replica named reports the latest revision applied."""
    started = time.monotonic()
    while True:
        found = listing(fleet.url(names[0]))
        states = {r["replica_id"]: r for r in found["replicas"]}
        if all(
            states.get(f"replica-{n}", {}).get("applied_revision") == found["revision"]
            for n in names
        ):
            return found
        assert time.monotonic() - started < BOUND_S, states
        time.sleep(0.2)


def test_every_replica_reports_the_revision_it_applied(fleet: Fleet) -> None:
    found = wait_until_current(fleet, ("a", "b", "c"))
    assert found["revision"] == 0
    assert found["replica_id"] == "replica-a"
    replicas = {r["replica_id"]: r for r in found["replicas"]}
    assert set(replicas) == {"replica-a", "replica-b", "replica-c"}
    for replica in replicas.values():
        assert replica["state"] == "current"
        assert replica["serving"] == {"tiny": "1"}


def test_a_promotion_on_one_replica_is_served_by_all_within_the_bound(fleet: Fleet) -> None:
    response = admin("POST", fleet.url("a"), "/admin/models/tiny/promote", json={"version": "2"})
    assert response.status_code == 200, response.text
    assert response.json()["serving_version"] == "2"
    assert response.json()["revision"] == 1
    wait_until_served(fleet, ("a", "b", "c"), "2")
    found = wait_until_current(fleet, ("a", "b", "c"))
    assert found["revision"] == 1
    tiny = next(m for m in listing(fleet.url("c"))["models"] if m["name"] == "tiny")
    assert (tiny["serving_version"], tiny["previous_version"]) == ("2", "1")


def test_a_rollback_on_another_replica_reaches_all_of_them(fleet: Fleet) -> None:
    response = admin("POST", fleet.url("b"), "/admin/models/tiny/rollback")
    assert response.status_code == 200, response.text
    assert (response.json()["serving_version"], response.json()["previous_version"]) == ("1", "2")
    wait_until_served(fleet, ("a", "b", "c"), "1")
    assert wait_until_current(fleet, ("a", "b", "c"))["revision"] == 2


def test_a_canary_share_holds_counted_over_all_replicas(fleet: Fleet) -> None:
    response = admin(
        "PUT",
        fleet.url("c"),
        "/admin/models/tiny/traffic",
        json={"canary_version": "2", "canary_percent": 25},
    )
    assert response.status_code == 200, response.text
    wait_until_current(fleet, ("a", "b", "c"))
    versions: Counter[str] = Counter()
    per_replica: dict[str, Counter[str]] = {n: Counter() for n in ("a", "b", "c")}
    for i in range(60):  # round-robin, as a Service spreads requests
        name = "abc"[i % 3]
        version = served_version(fleet.url(name))
        versions[version] += 1
        per_replica[name][version] += 1
    # Each replica splits its own requests exactly (to within one), so all of them together
    # are within one request per replica of the share.
    assert abs(versions["2"] - 15) <= 3, versions
    assert versions["1"] + versions["2"] == 60
    assert all(counts["2"] >= 4 for counts in per_replica.values()), per_replica
    cleared = admin("PUT", fleet.url("a"), "/admin/models/tiny/traffic", json={})
    assert cleared.status_code == 200, cleared.text
    wait_until_current(fleet, ("a", "b", "c"))


def test_two_admins_changing_traffic_at_once_get_one_winner_and_a_conflict(
    fleet: Fleet,
) -> None:
    revision = listing(fleet.url("a"))["revision"]
    results: dict[str, httpx.Response] = {}
    barrier = threading.Barrier(2)

    def change(name: str, percent: int) -> None:
        barrier.wait()
        results[name] = admin(
            "PUT",
            fleet.url(name),
            "/admin/models/tiny/traffic",
            json={"canary_version": "2", "canary_percent": percent},
            headers={"If-Match": f'"{revision}"'},
        )

    threads = [threading.Thread(target=change, args=(n, p)) for n, p in (("a", 10), ("b", 90))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [200, 409], {n: r.text for n, r in results.items()}
    loser = next(r for r in results.values() if r.status_code == 409)
    assert loser.json()["error"]["code"] == "revision_conflict"
    winner = next(r for r in results.values() if r.status_code == 200).json()
    found = wait_until_current(fleet, ("a", "b", "c"))
    assert found["revision"] == revision + 1
    for name in ("a", "b", "c"):
        tiny = next(m for m in listing(fleet.url(name))["models"] if m["name"] == "tiny")
        assert tiny["canary"] == winner["canary"]
    # A stale If-Match is refused as well, changing nothing.
    stale = admin(
        "PUT",
        fleet.url("c"),
        "/admin/models/tiny/traffic",
        json={},
        headers={"If-Match": str(revision)},
    )
    assert stale.status_code == 409
    assert listing(fleet.url("c"))["revision"] == revision + 1
    cleared = admin("PUT", fleet.url("c"), "/admin/models/tiny/traffic", json={})
    assert cleared.status_code == 200, cleared.text


def test_a_version_that_fails_on_one_replica_is_reported_and_it_keeps_serving(
    fleet: Fleet,
) -> None:
    response = admin("POST", fleet.url("a"), "/admin/models/tiny/promote", json={"version": "3"})
    assert response.status_code == 200, response.text
    wait_until_served(fleet, ("a", "b"), "3")
    started = time.monotonic()
    while (replica := replicas_by_id(fleet.url("a"))["replica-c"])["state"] != "failed":
        assert time.monotonic() - started < BOUND_S, replica
        time.sleep(0.2)
    assert "3" in replica["reason"]
    assert replica["serving"] == {"tiny": "1"}
    assert replica["applied_revision"] < listing(fleet.url("a"))["revision"]
    # Still in service, on the last revision it applied.
    assert served_version(fleet.url("c")) == "1"
    ready = httpx.get(f"{fleet.url('c')}/ready", timeout=10)
    assert ready.status_code == 200
    # A later revision that loads there brings it back in step.
    response = admin("POST", fleet.url("b"), "/admin/models/tiny/promote", json={"version": "2"})
    assert response.status_code == 200, response.text
    wait_until_served(fleet, ("a", "b", "c"), "2")
    replicas = wait_until_current(fleet, ("a", "b", "c"))["replicas"]
    assert all(r["state"] == "current" for r in replicas), replicas


def test_a_replica_down_during_a_promotion_comes_back_on_it(fleet: Fleet) -> None:
    assert fleet.servers["b"].stop() == 0
    response = admin("POST", fleet.url("a"), "/admin/models/tiny/promote", json={"version": "3"})
    assert response.status_code == 200, response.text
    revision = response.json()["revision"]
    fleet.start("b").wait_ready()
    assert served_version(fleet.url("b")) == "3"
    tiny = next(m for m in listing(fleet.url("b"))["models"] if m["name"] == "tiny")
    assert (tiny["serving_version"], tiny["previous_version"], tiny["revision"]) == (
        "3",
        "2",
        revision,
    )
    # A replica that was never there starts on the desired revision too, whatever its
    # settings pin (tiny:1).
    fleet.start("d").wait_ready()
    assert served_version(fleet.url("d")) == "3"
    states = replicas_by_id(fleet.url("d"))
    assert states["replica-d"]["applied_revision"] == revision
    assert states["replica-d"]["state"] == "current"


def test_a_version_copied_in_after_start_up_is_found_by_every_replica(fleet: Fleet) -> None:
    write_tiny_checkpoint(fleet.repositories["a"] / "tiny" / "4" / "model.safetensors", seed=3)
    response = admin("POST", fleet.url("d"), "/admin/models/tiny/promote", json={"version": "4"})
    assert response.status_code == 200, response.text
    # Every replica on the shared volume reads the repository again to apply it.
    wait_until_served(fleet, ("a", "b", "d"), "4")
    # Replica c's own volume has no tiny/4: it says so, and serves on.
    started = time.monotonic()
    while (replica := replicas_by_id(fleet.url("a"))["replica-c"])["state"] != "failed":
        assert time.monotonic() - started < BOUND_S, replica
        time.sleep(0.2)
    assert "'4'" in replica["reason"]
    assert served_version(fleet.url("c")) == "2"
