import json
import logging
from pathlib import Path

import pytest

from tests.api.conftest import (
    API_KEY,
    assert_error,
    assert_still_serving,
    infer,
    jpeg_bytes,
    make_settings,
    started_client,
)
from veracity.api.auth import key_id
from veracity.checkpoint import read_metadata


def test_health_and_ready(client) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model_loaded": True, "checkpoint_exists": True}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "status": "ok"}


def test_model_metadata(client, tiny_checkpoint: Path) -> None:
    response = client.get("/model", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    body = response.json()
    meta = read_metadata(tiny_checkpoint)
    assert body["architecture"] == meta.architecture
    assert body["weights_sha256"] == meta.weights_sha256
    assert body["class_names"] == ["real", "fake"]
    assert body["input_size"] == [3, 64, 64]
    assert body["device"] == "cpu"
    assert_error(client.get("/model"), 401, "unauthorized")


def test_probes_and_metrics_need_no_key(client) -> None:
    for path in ("/health", "/ready", "/metrics"):
        assert client.get(path).status_code == 200


def test_unknown_path_and_wrong_method_use_the_error_shape(client) -> None:
    assert_error(client.get("/no/such/path"), 404, "not_found")
    assert_error(client.get("/infer"), 405, "method_not_allowed")
    assert_still_serving(client)


def test_metrics_cover_inference_rejections_and_model(client) -> None:
    infer(client, jpeg_bytes())
    infer(client, b"not an image")
    client.get(f"/random/{'x' * 20}")
    text = client.get("/metrics").text
    assert "veracity_inference_seconds_count 1.0" in text
    assert "veracity_preprocess_seconds_count 1.0" in text
    assert "veracity_images_processed_total{label=" in text
    assert 'veracity_rejected_requests_total{reason="invalid_image"} 1.0' in text
    assert 'veracity_model_info{architecture="test_efficientnet"' in text
    assert 'handler="/infer"' in text
    assert "xxxxxxxxxx" not in text  # raw paths never become label values


def test_docs_describe_the_contract(client) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "One of the keys configured in VERACITY_API_KEYS.",
    }
    infer_op = schema["paths"]["/infer"]["post"]
    assert set(infer_op["responses"]) == {
        "200",
        "400",
        "401",
        "404",  # an unknown ?model= or ?model_version=
        "408",
        "413",
        "415",
        "422",
        "429",
        "500",
        "503",
        "504",
        "507",  # a version that does not fit the model memory budget
    }
    assert "multipart/form-data" in infer_op["requestBody"]["content"]
    assert infer_op["security"] == [{"APIKeyHeader": []}]
    assert "examples" in schema["components"]["schemas"]["InferResponse"]


def test_docs_can_be_switched_off(tiny_checkpoint: Path) -> None:
    for client in started_client(make_settings(tiny_checkpoint, docs_enabled=False)):
        assert_error(client.get("/docs"), 404, "not_found")
        assert_error(client.get("/openapi.json"), 404, "not_found")


def test_auth_disabled_serves_without_a_key(tiny_checkpoint: Path, caplog) -> None:
    settings = make_settings(tiny_checkpoint, api_keys="", auth_disabled=True)
    with caplog.at_level(logging.WARNING, logger="veracity"):
        for client in started_client(settings):
            assert infer(client, jpeg_bytes(), key=None).status_code == 200
    assert any("DISABLED" in r.getMessage() for r in caplog.records)


def test_failed_model_load_is_reported_and_inference_is_503(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "missing.safetensors")
    from fastapi.testclient import TestClient

    from veracity.api.app import create_app

    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        with pytest.raises(Exception, match="failed to load"):
            client.portal.call(app.state.model_service.wait_ready)
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json() == {
            "status": "failed",
            "model_loaded": False,
            "checkpoint_exists": False,
        }
        assert client.get("/ready").status_code == 503
        response = infer(client, jpeg_bytes())
        error = assert_error(response, 503, "not_ready")
        assert "failed to load" in error["message"]
        assert response.headers["retry-after"] == "1"


def test_unexpected_errors_are_500_without_details_and_logged(
    tiny_checkpoint: Path, json_logs
) -> None:
    for client in started_client(make_settings(tiny_checkpoint)):
        predictor = client.app.state.model_service.default.predictor

        def explode(*args, **kwargs):
            raise RuntimeError("secret internal detail /srv/app/x.py")

        predictor.predict = explode
        response = infer(client, jpeg_bytes())
        error = assert_error(response, 500, "internal_error")
        assert "secret" not in response.text
        assert "quote the request_id" in error["message"]
        del predictor.predict
        assert_still_serving(client)
    lines = json_logs()
    # The shared batch's failure is logged once, then each request's own error with its ID.
    (batch_line,) = [line for line in lines if line["message"] == "batch failed"]
    assert batch_line["batch_size"] == 1
    (request_line,) = [line for line in lines if line["message"] == "unhandled exception"]
    assert request_line["request_id"] == error["request_id"]
    assert "secret internal detail" in request_line["exc_info"]


def test_logs_are_json_with_request_id_and_never_the_key(client, json_logs) -> None:
    response = infer(client, jpeg_bytes(), headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    lines = json_logs()
    access = [line for line in lines if line["logger"] == "veracity.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "req-42"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/infer", 200)
    assert line["latency_ms"] > 0
    assert line["client"]
    assert line["key_id"] == key_id(API_KEY)
    assert {"time", "level", "message"} <= set(line)
    for entry in lines:
        assert API_KEY not in json.dumps(entry)


def test_onnx_backend_serves_the_same_numbers(tiny_checkpoint: Path, tmp_path: Path) -> None:
    image = jpeg_bytes(400, 300, seed=12)
    answers = {}
    for backend in ("torch", "onnx"):
        settings = make_settings(tiny_checkpoint, backend=backend, export_dir=tmp_path)
        for client in started_client(settings):
            answers[backend] = infer(client, image).json()
            assert client.get("/model", headers={"X-API-Key": API_KEY}).json()["backend"] == backend
    assert answers["onnx"]["fake_prob"] == pytest.approx(answers["torch"]["fake_prob"], abs=1e-4)
    assert list(tmp_path.glob("*.onnx"))
