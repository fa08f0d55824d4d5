"""The model repository over HTTP: listing, choosing, the admin lifecycle, canary, shadow."""

from __future__ import annotations

import shutil
import threading
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
from tests.conftest import make_repository, write_tiny_checkpoint
from veracity.api.app import create_app

ADMIN = {"X-API-Key": ADMIN_KEY}
USER = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repository(tmp_path_factory.mktemp("repository"))


def repo_settings(repository: Path, tiny_checkpoint: Path, **overrides):
    values = {
        "model_repository": repository,
        "default_model": "tiny:1",
        "admin_api_keys": ADMIN_KEY,
        "backend": "torch",
    } | overrides
    return make_settings(tiny_checkpoint, **values)


@pytest.fixture
def client(repository: Path, tiny_checkpoint: Path):
    yield from started_client(repo_settings(repository, tiny_checkpoint))


def model(client: TestClient, name: str = "tiny") -> dict:
    response = client.get(f"/models/{name}", headers=USER)
    assert response.status_code == 200, response.text
    return response.json()


def states(client: TestClient, name: str = "tiny") -> dict[str, str]:
    return {v["version"]: v["state"] for v in model(client, name)["versions"]}


def metric(client: TestClient, prefix: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_repository_is_scanned_and_listed(client: TestClient) -> None:
    response = client.get("/models", headers=USER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [m["name"] for m in body["models"]] == ["other", "tiny"]
    tiny = next(m for m in body["models"] if m["name"] == "tiny")
    assert tiny["default"] is True
    assert tiny["serving_version"] == "1"  # pinned by VERACITY_DEFAULT_MODEL=tiny:1
    versions = {v["version"]: v for v in tiny["versions"]}
    assert [v["version"] for v in tiny["versions"]] == ["1", "2", "broken", "empty"]
    assert versions["1"]["state"] == "loaded"
    assert versions["1"]["serving"] is True
    assert versions["1"]["memory_bytes"] > 0
    assert versions["2"]["state"] == "available"  # on disk, loaded on first use
    assert versions["empty"]["state"] == "invalid"
    assert "exactly one checkpoint" in versions["empty"]["reason"]
    assert versions["1"]["architecture"]
    assert len(versions["1"]["weights_sha256"]) == 64
    assert body["memory"]["used_bytes"] == versions["1"]["memory_bytes"]
    assert body["memory"]["budget_bytes"] == 4096 * 2**20
    assert metric(client, "veracity_model_memory_budget_bytes") == 4096 * 2**20
    assert client.get("/models").status_code == 401
    assert_error(client.get("/models/nope", headers=USER), 404, "model_not_found")


def test_requests_choose_a_model_and_version_and_answers_say_which(client: TestClient) -> None:
    default = infer(client, jpeg_bytes(seed=1))
    assert default.status_code == 200, default.text
    assert (default.json()["model_name"], default.json()["model_version"]) == ("tiny", "1")
    pinned = infer(client, jpeg_bytes(seed=1), params={"model_version": "2"})
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["model_version"] == "2"  # loaded on demand
    assert states(client)["2"] == "loaded"
    other = infer(client, jpeg_bytes(seed=1), params={"model": "other"})
    assert (other.json()["model_name"], other.json()["model_version"]) == ("other", "1")
    assert_error(infer(client, jpeg_bytes(), params={"model": "nope"}), 404, "model_not_found")
    missing = assert_error(
        infer(client, jpeg_bytes(), params={"model_version": "9"}), 404, "model_not_found"
    )
    assert "no usable version '9'" in missing["message"]
    invalid = assert_error(
        infer(client, jpeg_bytes(), params={"model_version": "empty"}), 404, "model_not_found"
    )
    assert "exactly one checkpoint" in invalid["message"]
    # A corrupt version asked for by a request: refused, and nothing else changes.
    assert_error(
        infer(client, jpeg_bytes(), params={"model_version": "broken"}), 422, "model_load_failed"
    )
    assert_error(infer(client, jpeg_bytes(), params={"model": "../etc"}), 422, "validation_error")
    assert_still_serving(client)
    # The stored record names the version that answered.
    stored = client.get(f"/predictions/{pinned.json()['prediction_id']}", headers=USER).json()
    assert stored["model_version"] == "2"
    first = client.get(f"/predictions/{default.json()['prediction_id']}", headers=USER).json()
    assert stored["weights_sha256"] != first["weights_sha256"]


def test_admin_routes_need_the_admin_scope(client: TestClient) -> None:
    routes = [
        ("post", "/admin/models/tiny/versions/2/load", None),
        ("post", "/admin/models/tiny/versions/2/unload", None),
        ("post", "/admin/models/tiny/promote", {"version": "2"}),
        ("post", "/admin/models/tiny/rollback", None),
        ("put", "/admin/models/tiny/traffic", {"shadow_version": "2"}),
    ]
    for method, url, body in routes:
        assert_error(client.request(method, url, json=body, headers=USER), 403, "forbidden")
        assert_error(client.request(method, url, json=body), 401, "unauthorized")
    assert model(client)["serving_version"] == "1"
    assert states(client)["2"] == "available"


def test_promote_and_rollback(client: TestClient) -> None:
    assert_error(client.post("/admin/models/tiny/rollback", headers=ADMIN), 409, "model_conflict")
    response = client.post("/admin/models/tiny/promote", json={"version": "2"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["serving_version"] == "2"
    assert response.json()["previous_version"] == "1"
    assert infer(client, jpeg_bytes(seed=3)).json()["model_version"] == "2"
    back = client.post("/admin/models/tiny/rollback", headers=ADMIN)
    assert back.status_code == 200, back.text
    assert (back.json()["serving_version"], back.json()["previous_version"]) == ("1", "2")
    assert infer(client, jpeg_bytes(seed=3)).json()["model_version"] == "1"
    text = client.get("/metrics").text
    assert 'veracity_model_lifecycle_total{action="rollback",outcome="ok"} 1.0' in text
    assert 'veracity_model_lifecycle_total{action="rollback",outcome="failed"} 1.0' in text
    assert 'veracity_model_lifecycle_total{action="promote",outcome="ok"} 1.0' in text


def test_a_failed_load_leaves_the_serving_version(client: TestClient) -> None:
    for version in ("broken", "empty"):
        response = client.post(
            "/admin/models/tiny/promote", json={"version": version}, headers=ADMIN
        )
        error = assert_error(response, 422, "model_load_failed")
        assert "what served before still does" in error["message"]
    assert "SHA-256" in error["message"] or "checkpoint" in error["message"]
    assert_error(
        client.post("/admin/models/tiny/promote", json={"version": "7"}, headers=ADMIN),
        404,
        "model_not_found",
    )
    assert_error(
        client.post("/admin/models/nope/versions/1/load", headers=ADMIN), 404, "model_not_found"
    )
    assert model(client)["serving_version"] == "1"
    assert infer(client, jpeg_bytes(seed=4)).json()["model_version"] == "1"
    assert metric(client, 'veracity_model_lifecycle_total{action="load",outcome="failed"}') >= 2


def test_load_and_unload(client: TestClient) -> None:
    loaded = client.post("/admin/models/tiny/versions/2/load", headers=ADMIN)
    assert loaded.status_code == 200, loaded.text
    assert states(client)["2"] == "loaded"
    assert model(client)["serving_version"] == "1"  # loading routes no traffic
    assert_error(
        client.post("/admin/models/tiny/versions/1/unload", headers=ADMIN), 409, "model_conflict"
    )
    unloaded = client.post("/admin/models/tiny/versions/2/unload", headers=ADMIN)
    assert unloaded.status_code == 200, unloaded.text
    assert states(client)["2"] == "available"
    assert_error(
        client.post("/admin/models/tiny/versions/2/unload", headers=ADMIN), 404, "model_not_found"
    )
    assert_still_serving(client)


def test_a_version_added_after_start_up_is_found(client: TestClient, repository: Path) -> None:
    added = repository / "tiny" / "10"
    try:
        write_tiny_checkpoint(added / "model.safetensors", seed=5)
        assert states(client)["10"] == "available"
        response = client.post("/admin/models/tiny/promote", json={"version": "10"}, headers=ADMIN)
        assert response.status_code == 200, response.text
        assert infer(client, jpeg_bytes(seed=6)).json()["model_version"] == "10"
    finally:
        shutil.rmtree(added)


def test_hostile_lifecycle_requests(client: TestClient) -> None:
    cases = [
        ("post", "/admin/models/tiny/promote", {"version": "../../etc"}, 422),
        ("post", "/admin/models/tiny/promote", {"version": "2", "extra": 1}, 422),
        ("post", "/admin/models/tiny/promote", {}, 422),
        ("post", "/admin/models/" + "x" * 65 + "/rollback", None, 422),
        ("put", "/admin/models/tiny/traffic", {"canary_percent": 150}, 422),
        ("put", "/admin/models/tiny/traffic", {"canary_percent": 10}, 409),
        ("put", "/admin/models/tiny/traffic", {"canary_version": "1", "canary_percent": 5}, 409),
    ]
    for method, url, body, status in cases:
        response = client.request(method, url, json=body, headers=ADMIN)
        assert response.status_code == status, (url, body, response.text)
        assert set(response.json()) == {"error"}
    assert_still_serving(client)


def test_canary_takes_its_exact_share(client: TestClient) -> None:
    response = client.put(
        "/admin/models/tiny/traffic",
        json={"canary_version": "2", "canary_percent": 25},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    assert response.json()["canary"] == {"version": "2", "percent": 25.0}
    versions = [infer(client, jpeg_bytes(seed=100 + i)).json()["model_version"] for i in range(20)]
    assert versions.count("2") == 5
    assert versions.count("1") == 15
    # A request naming the version is not part of the split.
    pinned = infer(client, jpeg_bytes(seed=7), params={"model_version": "1"})
    assert pinned.json()["model_version"] == "1"
    text = client.get("/metrics").text
    assert 'veracity_model_requests_total{model="tiny",role="canary",version="2"} 5.0' in text
    assert 'veracity_model_requests_total{model="tiny",role="primary",version="1"}' in text
    assert 'veracity_model_requests_total{model="tiny",role="pinned",version="1"} 1.0' in text
    assert 'veracity_model_verdicts_total{model="tiny",verdict=' in text
    # The canary cannot be unloaded while it takes traffic; promoting it ends the canary.
    assert_error(
        client.post("/admin/models/tiny/versions/2/unload", headers=ADMIN), 409, "model_conflict"
    )
    promoted = client.post("/admin/models/tiny/promote", json={"version": "2"}, headers=ADMIN)
    assert promoted.json()["canary"] is None


def test_shadow_scores_are_recorded_beside_the_answer(client: TestClient) -> None:
    response = client.put("/admin/models/tiny/traffic", json={"shadow_version": "2"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    answers = [infer(client, jpeg_bytes(seed=200 + i)).json() for i in range(3)]
    client.portal.call(client.app.state.model_service.wait_shadows)
    for answer in answers:
        assert answer["model_version"] == "1"  # the shadow's answer is never returned
        listed = client.get(
            "/predictions", params={"shadow_of": answer["prediction_id"]}, headers=USER
        ).json()["items"]
        assert len(listed) == 1
        shadow = listed[0]
        assert (shadow["kind"], shadow["model_version"]) == ("shadow", "2")
        assert shadow["shadow_of"] == answer["prediction_id"]
        assert (
            shadow["input_sha256"]
            == client.get(f"/predictions/{answer['prediction_id']}", headers=USER).json()[
                "input_sha256"
            ]
        )
    # Shadows are not listed with the answers.
    everything = client.get("/predictions", params={"limit": 100}, headers=USER).json()["items"]
    assert all(item["kind"] != "shadow" for item in everything)
    compared = metric(client, 'veracity_shadow_comparisons_total{model="tiny",outcome="agree"')
    compared += metric(client, 'veracity_shadow_comparisons_total{model="tiny",outcome="dis')
    assert compared == 3
    # GET /models says the same, for the admin page.
    tiny = client.get("/models/tiny", headers=USER).json()
    tally = tiny["shadow_agreement"]
    assert tally["version"] == "2"
    assert tally["agree"] + tally["disagree"] == 3
    assert tally["dropped"] == 0
    cleared = client.put("/admin/models/tiny/traffic", json={}, headers=ADMIN)
    assert cleared.json()["shadow_version"] is None
    assert cleared.json()["shadow_agreement"] is None


def test_memory_budget_evicts_the_least_recently_used(
    repository: Path, tiny_checkpoint: Path
) -> None:
    size = (repository / "tiny" / "1" / "model.safetensors").stat().st_size
    # Room for the default version and one more, not two more.
    budget_mb = 2.5 * size / 2**20
    settings = repo_settings(repository, tiny_checkpoint, model_memory_mb=budget_mb)
    for client in started_client(settings):
        assert infer(client, jpeg_bytes(), params={"model_version": "2"}).status_code == 200
        assert states(client)["2"] == "loaded"
        # other/1 needs room: tiny/2, least recently used and taking no traffic, goes.
        assert infer(client, jpeg_bytes(), params={"model": "other"}).status_code == 200
        assert states(client)["2"] == "available"
        assert states(client, "other")["1"] == "loaded"
        assert states(client)["1"] == "loaded"  # serving: never evicted
        assert metric(client, 'veracity_model_lifecycle_total{action="evict",outcome="ok"}') == 1


def test_a_version_too_large_for_the_budget_is_refused(
    repository: Path, tiny_checkpoint: Path
) -> None:
    size = (repository / "tiny" / "1" / "model.safetensors").stat().st_size
    # The serving version fits; a second one cannot, and the serving one may not go.
    budget_mb = 1.5 * size / 2**20
    settings = repo_settings(repository, tiny_checkpoint, model_memory_mb=budget_mb)
    for client in started_client(settings):
        response = client.post("/admin/models/tiny/promote", json={"version": "2"}, headers=ADMIN)
        error = assert_error(response, 507, "model_memory_exceeded")
        assert "VERACITY_MODEL_MEMORY_MB" in error["message"]
        assert model(client)["serving_version"] == "1"
        assert_still_serving(client)


def test_hot_reload_under_load_drops_no_request(client: TestClient) -> None:
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def load() -> None:
        for i in range(400):  # bounded: stops by itself
            if stop.is_set():
                return
            response = infer(client, jpeg_bytes(seed=i % 7))
            if response.status_code != 200:
                failures.append(response.text)
            else:
                seen.add(response.json()["model_version"])

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for version in ("2", "1", "2"):
            response = client.post(
                "/admin/models/tiny/promote", json={"version": version}, headers=ADMIN
            )
            assert response.status_code == 200, response.text
        assert client.post("/admin/models/tiny/rollback", headers=ADMIN).status_code == 200
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert failures == []
    assert seen <= {"1", "2"}
    assert model(client)["serving_version"] == "1"
    assert infer(client, jpeg_bytes(seed=9)).json()["model_version"] == "1"


def test_concurrent_promote_and_rollback_are_serialised(client: TestClient) -> None:
    assert (
        client.post("/admin/models/tiny/promote", json={"version": "2"}, headers=ADMIN).status_code
        == 200
    )
    results: list[int] = []

    def call(i: int) -> None:
        if i % 2:
            response = client.post("/admin/models/tiny/rollback", headers=ADMIN)
        else:
            response = client.post(
                "/admin/models/tiny/promote", json={"version": "2"}, headers=ADMIN
            )
        results.append(response.status_code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert set(results) == {200}
    entry = model(client)
    # Whatever the order, the route is whole: one serving version, the other previous.
    assert {entry["serving_version"], entry["previous_version"]} == {"1", "2"}
    assert states(client)[entry["serving_version"]] == "loaded"
    assert infer(client, jpeg_bytes(seed=8)).json()["model_version"] == entry["serving_version"]


def test_several_models_need_a_default(repository: Path, tiny_checkpoint: Path) -> None:
    app = create_app(repo_settings(repository, tiny_checkpoint, default_model=None))
    with TestClient(app, raise_server_exceptions=False) as client:
        with pytest.raises(Exception, match="VERACITY_DEFAULT_MODEL"):
            client.portal.call(app.state.model_service.wait_ready)
        health = client.get("/health").json()
        assert health["status"] == "failed"


def test_a_loaded_version_whose_folder_is_removed_keeps_serving(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    root = make_repository(tmp_path / "models")
    for client in started_client(repo_settings(root, tiny_checkpoint)):
        assert infer(client, jpeg_bytes(), params={"model_version": "2"}).status_code == 200
        shutil.rmtree(root / "tiny" / "2")
        assert states(client)["2"] == "loaded"
        pinned = infer(client, jpeg_bytes(seed=2), params={"model_version": "2"})
        assert pinned.json()["model_version"] == "2"
        unloaded = client.post("/admin/models/tiny/versions/2/unload", headers=ADMIN)
        assert unloaded.status_code == 200, unloaded.text
        assert "2" not in states(client)
        assert_error(
            infer(client, jpeg_bytes(), params={"model_version": "2"}), 404, "model_not_found"
        )


def test_a_slow_on_demand_load_answers_503_and_goes_on(
    repository: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from veracity.serving.runner import ModelRunner

    original = ModelRunner._load_blocking
    gate = threading.Event()

    def slow(self):
        if self.version == "2":
            assert gate.wait(30)
        return original(self)

    monkeypatch.setattr(ModelRunner, "_load_blocking", slow)
    settings = repo_settings(repository, tiny_checkpoint, request_timeout_s=0.5)
    for client in started_client(settings):
        response = infer(client, jpeg_bytes(), params={"model_version": "2"})
        error = assert_error(response, 503, "not_ready")
        assert "still loading" in error["message"]
        assert response.headers["retry-after"] == "5"
        assert states(client)["2"] == "loading"
        assert_still_serving(client)  # the default version is not held up
        gate.set()
        for _ in range(100):
            if states(client)["2"] == "loaded":
                break
            threading.Event().wait(0.1)
        retried = infer(client, jpeg_bytes(), params={"model_version": "2"})
        assert retried.json()["model_version"] == "2"


def test_on_demand_loads_can_be_left_to_admins(repository: Path, tiny_checkpoint: Path) -> None:
    settings = repo_settings(repository, tiny_checkpoint, model_load_on_demand=False)
    for client in started_client(settings):
        response = infer(client, jpeg_bytes(), params={"model_version": "2"})
        error = assert_error(response, 503, "not_ready")
        assert "VERACITY_MODEL_LOAD_ON_DEMAND" in error["message"]
        assert states(client)["2"] == "available"
        assert client.post("/admin/models/tiny/versions/2/load", headers=ADMIN).status_code == 200
        assert infer(client, jpeg_bytes(), params={"model_version": "2"}).status_code == 200
