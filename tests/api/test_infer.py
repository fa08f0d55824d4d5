import json
from pathlib import Path

import pytest

from tests.api.conftest import (
    API_KEY,
    OTHER_KEY,
    assert_error,
    assert_still_serving,
    infer,
    jpeg_bytes,
)
from veracity.cli import main


def test_prediction_matches_the_offline_cli(
    client, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    data = jpeg_bytes(640, 360, seed=3, quality=90)
    image = tmp_path / "frame.jpg"
    image.write_bytes(data)
    response = infer(client, data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        main(["predict", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", str(image)]) == 0
    )
    offline = json.loads(capsys.readouterr().out)
    assert body["fake_prob"] == pytest.approx(offline["fake_prob"], abs=1e-6)
    assert body["real_prob"] == pytest.approx(offline["real_prob"], abs=1e-6)
    assert body["label"] == offline["label"]


def test_response_contract(client) -> None:
    response = infer(client, jpeg_bytes())
    body = response.json()
    assert {"request_id", "fake_prob", "real_prob"} <= set(body)
    assert body["fake_prob"] + body["real_prob"] == pytest.approx(1.0, abs=1e-9)
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["model_name"] == "tiny"
    assert body["model_version"] == "0.0.1"
    assert set(body["timings_ms"]) == {"preprocess", "inference"}


def test_incoming_request_id_is_kept(client) -> None:
    response = infer(client, jpeg_bytes(), headers={"X-Request-ID": "trace-abc.123"})
    assert response.headers["x-request-id"] == "trace-abc.123"
    assert response.json()["request_id"] == "trace-abc.123"


@pytest.mark.parametrize("bad_id", ["", "has space", "x" * 200, "<script>", "-leading-dash"])
def test_malformed_request_id_is_replaced(client, bad_id: str) -> None:
    response = infer(client, jpeg_bytes(), headers={"X-Request-ID": bad_id})
    assert response.headers["x-request-id"] != bad_id
    assert len(response.headers["x-request-id"]) == 32


def test_both_rotation_keys_work(client) -> None:
    assert infer(client, jpeg_bytes(), key=API_KEY).status_code == 200
    assert infer(client, jpeg_bytes(), key=OTHER_KEY).status_code == 200


@pytest.mark.parametrize("key", [None, "", "wrong-key-0123456789abcdef"])
def test_missing_or_wrong_key_is_401(client, key) -> None:
    response = infer(client, jpeg_bytes(), key=key)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
    assert_still_serving(client)


def test_unauthenticated_upload_is_refused_before_the_body_is_parsed(client) -> None:
    # A multipart body that would fail to parse: the 401 proves it was never read.
    response = client.post(
        "/infer",
        content=b"garbage",
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert_error(response, 401, "unauthorized")
