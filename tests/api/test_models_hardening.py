"""The model repository under a bad day: a corrupt newest version, failed loads asked for
again and again, server paths, a canary across a promotion, and V2 readiness messages."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import (
    ADMIN_KEY,
    API_KEY,
    assert_error,
    assert_still_serving,
    infer,
    jpeg_bytes,
    make_settings,
    started_client,
)
from tests.conftest import write_tiny_checkpoint
from veracity.api.app import create_app

ADMIN = {"X-API-Key": ADMIN_KEY}
USER = {"X-API-Key": API_KEY}


def corrupt_copy(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the metadata's SHA-256 no longer matches
    weights.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny/1, tiny/2, tiny/candidate valid; tiny/3, the newest, corrupt; an empty dir."""
    root = tmp_path_factory.mktemp("repository")
    write_tiny_checkpoint(root / "tiny" / "1" / "model.safetensors", seed=0)
    write_tiny_checkpoint(root / "tiny" / "2" / "model.safetensors", seed=1)
    write_tiny_checkpoint(root / "tiny" / "candidate" / "model.safetensors", seed=2)
    corrupt_copy(root / "tiny" / "2", root / "tiny" / "3")
    (root / "tiny" / "empty").mkdir()
    return root


def settings_for(repository: Path, tiny_checkpoint: Path, **overrides):
    values = {
        "model_repository": repository,
        "default_model": "tiny",
        "admin_api_keys": ADMIN_KEY,
        "backend": "torch",
    } | overrides
    return make_settings(tiny_checkpoint, **values)


@pytest.fixture
def client(repository: Path, tiny_checkpoint: Path) -> Iterator[TestClient]:
    yield from started_client(settings_for(repository, tiny_checkpoint))


@pytest.fixture
def pinned(repository: Path, tiny_checkpoint: Path) -> Iterator[TestClient]:
    """Serving tiny/2 as pinned, so the corrupt 3 was never tried."""
    yield from started_client(settings_for(repository, tiny_checkpoint, default_model="tiny:2"))


def tiny(client: TestClient) -> dict:
    response = client.get("/models/tiny", headers=USER)
    assert response.status_code == 200, response.text
    return response.json()


def versions(client: TestClient) -> dict[str, dict]:
    return {v["version"]: v for v in tiny(client)["versions"]}


def metric(client: TestClient, prefix: str) -> float:
    lines = client.get("/metrics").text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))


def test_a_corrupt_newest_version_does_not_take_the_replica_down(client: TestClient) -> None:
    assert client.get("/ready").status_code == 200
    model = tiny(client)
    assert model["serving_version"] == "2"
    broken = versions(client)["3"]
    assert broken["state"] == "failed"
    assert "SHA-256" in broken["reason"]
    assert versions(client)["2"]["state"] == "loaded"
    fallback = 'veracity_model_lifecycle_total{action="fallback",outcome="ok"}'
    assert metric(client, fallback) == 1
    assert_still_serving(client)


def test_a_pinned_corrupt_version_still_fails_start_up(
    repository: Path, tiny_checkpoint: Path
) -> None:
    app = create_app(settings_for(repository, tiny_checkpoint, default_model="tiny:3"))
    with TestClient(app, raise_server_exceptions=False) as client:
        service = app.state.model_service
        with pytest.raises(Exception, match="SHA-256"):
            client.portal.call(service.wait_ready)
        assert client.get("/ready").status_code == 503
        assert service.state == "failed"
        response = infer(client, jpeg_bytes())
        assert response.status_code == 503
        assert str(repository) not in response.text
        assert "tiny/3/model.safetensors" in response.text


def test_a_failed_load_is_remembered_until_its_files_change(
    pinned: TestClient, repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import veracity.checkpoint

    hashed: list[Path] = []
    real = veracity.checkpoint.file_sha256

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(veracity.checkpoint, "file_sha256", counting)
    weights = repository / "tiny" / "3" / "model.safetensors"
    # Any key may name a version: the weights are read once, then the failure answers.
    for attempt in range(4):
        response = infer(pinned, jpeg_bytes(), params={"model_version": "3"})
        error = assert_error(response, 422, "model_load_failed")
        assert ("have not changed" in error["message"]) == (attempt > 0)
    assert hashed == [weights]
    assert versions(pinned)["3"]["state"] == "failed"
    # An admin's load is answered the same way, without reading the weights again.
    response = pinned.post("/admin/models/tiny/versions/3/load", headers=ADMIN)
    assert_error(response, 422, "model_load_failed")
    assert hashed == [weights]
    # Files that changed are tried again at once (here: still corrupt, read once more).
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert versions(pinned)["3"]["state"] == "available"
    for _ in range(3):
        response = infer(pinned, jpeg_bytes(), params={"model_version": "3"})
        assert_error(response, 422, "model_load_failed")
    assert hashed == [weights, weights]
    assert_still_serving(pinned)


def test_ordinary_keys_see_no_server_paths(pinned: TestClient, repository: Path) -> None:
    root = str(repository)
    for params in ({"model_version": "empty"}, {"model_version": "3"}):
        response = infer(pinned, jpeg_bytes(), params=params)
        assert response.status_code in (404, 422), response.text
        assert root not in response.text
    assert "tiny/3/model.safetensors has SHA-256" in response.json()["error"]["message"]
    listing = pinned.get("/models", headers=USER)
    assert listing.status_code == 200
    assert root not in listing.text
    reasons = {v["version"]: v["reason"] for v in tiny(pinned)["versions"]}
    assert reasons["empty"].startswith("tiny/empty must hold exactly one checkpoint")
    assert "tiny/3/model.safetensors has SHA-256" in reasons["3"]


def test_promoting_another_version_ends_the_canary(pinned: TestClient) -> None:
    client = pinned
    body = {"canary_version": "candidate", "canary_percent": 50, "shadow_version": "1"}
    response = client.put("/admin/models/tiny/traffic", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["canary"] == {"version": "candidate", "percent": 50.0}
    response = client.post("/admin/models/tiny/promote", json={"version": "1"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    model = response.json()
    assert (model["serving_version"], model["previous_version"]) == ("1", "2")
    assert model["canary"] is None  # the canary was measured against 2, not 1
    assert model["shadow_version"] is None  # it was the version promoted
    answered = {
        infer(client, jpeg_bytes(seed=s), headers=USER).json()["model_version"] for s in range(4)
    }
    assert answered == {"1"}
    # A rollback switches versions too: a canary set meanwhile ends with it.
    body = {"canary_version": "candidate", "canary_percent": 50, "shadow_version": None}
    assert client.put("/admin/models/tiny/traffic", json=body, headers=ADMIN).status_code == 200
    response = client.post("/admin/models/tiny/rollback", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["serving_version"] == "2"
    assert response.json()["canary"] is None


@pytest.mark.parametrize(
    ("on_demand", "fragment"),
    [
        (True, "it loads on its first inference request"),
        (False, "only when an admin asks (VERACITY_MODEL_LOAD_ON_DEMAND=false)"),
    ],
)
def test_v2_readiness_says_how_an_unloaded_version_loads(
    repository: Path, tiny_checkpoint: Path, on_demand: bool, fragment: str
) -> None:
    settings = settings_for(
        repository, tiny_checkpoint, default_model="tiny:2", model_load_on_demand=on_demand
    )
    for client in started_client(settings):
        response = client.get("/v2/models/tiny/versions/1/ready", headers=USER)
        assert response.status_code == 503, response.text
        assert fragment in response.json()["error"]
