"""Readiness across the service's life: loading, ready, shutting down."""

import threading
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import assert_error, infer, jpeg_bytes, make_settings, started_client
from veracity.api.app import create_app
from veracity.serving.runner import ModelRunner
from veracity.serving.service import ModelService
from veracity.settings import ImageLimits, RunnerOptions, ServiceOptions


def test_not_ready_until_loaded_and_warmed_up(tiny_checkpoint: Path, monkeypatch) -> None:
    # Loads only when the test opens the gate, to observe the 'starting' state.
    gate = threading.Event()
    original = ModelRunner._load_blocking

    def gated(self):
        assert gate.wait(30)
        return original(self)

    monkeypatch.setattr(ModelRunner, "_load_blocking", gated)
    settings = make_settings(tiny_checkpoint)
    options = ServiceOptions(
        runner=RunnerOptions(device="cpu", workers=1), images=ImageLimits(max_pixels=10**6)
    )
    service = ModelService(tiny_checkpoint, options)
    app = create_app(settings, model_service=service)
    with TestClient(app, raise_server_exceptions=False) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.headers["retry-after"] == "1"
        assert ready.json() == {"ready": False, "status": "starting"}
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "starting"
        assert health.json()["model_loaded"] is False
        error = assert_error(infer(client, jpeg_bytes()), 503, "not_ready")
        assert "still loading" in error["message"]
        gate.set()
        client.portal.call(service.wait_ready)
        assert client.get("/ready").status_code == 200
        assert infer(client, jpeg_bytes()).status_code == 200


def test_readiness_fails_once_shutdown_begins_while_requests_still_finish(
    tiny_checkpoint: Path,
) -> None:
    for client in started_client(make_settings(tiny_checkpoint)):
        client.app.state.model_service.begin_shutdown()
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "status": "stopping"}
        assert client.get("/health").json()["status"] == "stopping"
        # Requests the server already accepted are still served; the server itself stops
        # accepting new connections (tested with a real process in tests/integration).
        assert infer(client, jpeg_bytes()).status_code == 200


def test_framework_validation_errors_use_the_error_shape(tiny_checkpoint: Path) -> None:
    app = create_app(make_settings(tiny_checkpoint))

    @app.get("/probe/{number}")
    def probe(number: int) -> dict[str, int]:
        return {"number": number}

    with TestClient(app, raise_server_exceptions=False) as client:
        error = assert_error(client.get("/probe/not-a-number"), 422, "validation_error")
        assert "path.number" in error["message"]
