"""The models' desired state on one replica: revisions, If-Match, versions kept warm, what
GET /models says about the replicas, and (SQLite) the state outliving a restart."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import assert_error, assert_still_serving, infer, jpeg_bytes, serving
from tests.api.test_models import ADMIN, USER, model, repo_settings, states
from tests.conftest import make_repository
from veracity.serving.desired import DesiredState
from veracity.serving.traffic import RouteSpec
from veracity.store.revisions import RevisionLog


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repository(tmp_path_factory.mktemp("repository"))


def listing(client: TestClient) -> dict:
    response = client.get("/models", headers=USER)
    assert response.status_code == 200, response.text
    return response.json()


def test_each_change_is_a_revision_and_if_match_guards_it(
    repository: Path, tiny_checkpoint: Path
) -> None:
    settings = repo_settings(repository, tiny_checkpoint, replica_id="only-one")
    with serving(settings) as client:
        found = listing(client)
        assert (found["revision"], found["replica_id"]) == (0, "only-one")
        (replica,) = found["replicas"]
        assert replica["replica_id"] == "only-one"
        assert (replica["state"], replica["applied_revision"]) == ("current", 0)
        assert replica["serving"] == {"other": "1", "tiny": "1"}

        promoted = client.post(
            "/admin/models/tiny/promote",
            json={"version": "2"},
            headers=ADMIN | {"If-Match": '"0"'},
        )
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["revision"] == 1
        # Decided on revision 0, which is no longer the latest: refused, nothing changed.
        stale = client.post("/admin/models/tiny/rollback", headers=ADMIN | {"If-Match": 'W/"0"'})
        assert "revision 1" in assert_error(stale, 409, "revision_conflict")["message"]
        assert model(client)["serving_version"] == "2"
        rolled_back = client.post("/admin/models/tiny/rollback", headers=ADMIN | {"If-Match": "1"})
        assert rolled_back.status_code == 200, rolled_back.text
        assert (rolled_back.json()["serving_version"], rolled_back.json()["revision"]) == ("1", 2)
        # A change refused for its own reasons stores no revision.
        assert_error(
            client.post("/admin/models/tiny/promote", json={"version": "nine"}, headers=ADMIN),
            404,
            "model_not_found",
        )
        assert_error(
            client.post("/admin/models/tiny/promote", json={"version": "broken"}, headers=ADMIN),
            422,
            "model_load_failed",
        )
        assert listing(client)["revision"] == 2
        for bad in ("two", '"-1"', "1" * 12):
            response = client.post("/admin/models/tiny/rollback", headers=ADMIN | {"If-Match": bad})
            assert response.status_code == 422, (bad, response.text)
        assert listing(client)["revision"] == 2
        assert_still_serving(client)


def test_a_version_kept_warm_is_never_evicted_until_unloaded(
    repository: Path, tiny_checkpoint: Path
) -> None:
    size = (repository / "tiny" / "1" / "model.safetensors").stat().st_size
    # Room for the serving version and one more.
    settings = repo_settings(repository, tiny_checkpoint, model_memory_mb=2.5 * size / 2**20)
    with serving(settings) as client:
        loaded = client.post("/admin/models/tiny/versions/2/load", headers=ADMIN)
        assert (loaded.status_code, loaded.json()["revision"]) == (200, 1)
        # other/1 needs the room tiny/2 holds, and tiny/2 is kept warm: refused.
        response = infer(client, jpeg_bytes(), params={"model": "other"})
        assert_error(response, 507, "model_memory_exceeded")
        assert states(client)["2"] == "loaded"
        unloaded = client.post("/admin/models/tiny/versions/2/unload", headers=ADMIN)
        assert (unloaded.status_code, unloaded.json()["revision"]) == (200, 2)
        assert states(client)["2"] == "available"
        assert infer(client, jpeg_bytes(), params={"model": "other"}).status_code == 200
        # other/1 was loaded on demand: unloading it is this replica's affair, no revision.
        assert states(client, "other")["1"] == "loaded"
        unloaded = client.post("/admin/models/other/versions/1/unload", headers=ADMIN)
        assert (unloaded.status_code, unloaded.json()["revision"]) == (200, 2)
        assert states(client, "other")["1"] == "available"


def test_the_desired_state_outlives_a_restart(repository: Path, tiny_checkpoint: Path) -> None:
    data_dir = tempfile.mkdtemp(prefix="veracity-test-store-")
    settings = repo_settings(repository, tiny_checkpoint, data_dir=data_dir)
    with serving(settings) as client:
        response = client.put(
            "/admin/models/tiny/traffic",
            json={"canary_version": "2", "canary_percent": 50, "shadow_version": "broken"},
            headers=ADMIN,
        )
        assert_error(response, 422, "model_load_failed")
        response = client.post("/admin/models/tiny/promote", json={"version": "2"}, headers=ADMIN)
        assert response.status_code == 200, response.text
        response = client.put(
            "/admin/models/tiny/traffic",
            json={"canary_version": "1", "canary_percent": 50},
            headers=ADMIN,
        )
        assert response.status_code == 200, response.text
    # The settings still pin tiny:1; the admin's later decision wins.
    with serving(settings) as client:
        tiny = model(client)
        assert (tiny["serving_version"], tiny["previous_version"], tiny["revision"]) == (
            "2",
            "1",
            2,
        )
        assert tiny["canary"] == {"version": "1", "percent": 50.0}
        versions = [infer(client, jpeg_bytes(seed=i)).json()["model_version"] for i in range(4)]
        assert sorted(versions) == ["1", "1", "2", "2"]


def test_without_a_store_the_revisions_are_this_process_own(
    repository: Path, tiny_checkpoint: Path
) -> None:
    settings = repo_settings(repository, tiny_checkpoint, store_enabled=False)
    with serving(settings) as client:
        response = client.post("/admin/models/tiny/promote", json={"version": "2"}, headers=ADMIN)
        assert (response.status_code, response.json()["revision"]) == (200, 1)
        found = listing(client)
        assert found["revision"] == 1
        assert [r["applied_revision"] for r in found["replicas"]] == [1]


def test_a_revision_that_does_not_fit_is_reported_and_the_replica_keeps_serving(
    repository: Path, tiny_checkpoint: Path
) -> None:
    """A revision stored by another replica that needs more versions at once than this one
    has room for: nothing it loaded is evicted for another of its own, nothing is routed to
    a version that is not loaded, and the replica serves on, saying why."""
    size = (repository / "tiny" / "1" / "model.safetensors").stat().st_size
    settings = repo_settings(repository, tiny_checkpoint, model_memory_mb=2.5 * size / 2**20)
    with serving(settings) as client:
        service = client.app.state.model_service
        log = RevisionLog(client.app.state.parts.database)
        document = DesiredState(
            0,
            {"tiny": RouteSpec("2", previous="1"), "other": RouteSpec("1")},
            {"other": frozenset({"1"})},
        ).to_document()
        client.portal.call(
            lambda: log.append(0, document, action="promote", model="tiny", key_id=None)
        )
        client.portal.call(service.sync_models)
        found = listing(client)
        (replica,) = found["replicas"]
        assert (found["revision"], replica["applied_revision"], replica["state"]) == (
            1,
            0,
            "failed",
        )
        assert "VERACITY_MODEL_MEMORY_MB" in replica["reason"]
        assert model(client)["serving_version"] == "1"
        assert infer(client, jpeg_bytes()).json()["model_version"] == "1"
        assert states(client)["1"] == "loaded"
        # The versions it loaded for the revision are no longer held for it.
        assert infer(client, jpeg_bytes(), params={"model": "other"}).status_code == 200
