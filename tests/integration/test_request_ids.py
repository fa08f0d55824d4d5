"""Two keys and one X-Request-ID against a real server process (SQLite and PostgreSQL):
both verdicts stored, each key reads its own, and the store-failure metric stays quiet."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
from PIL import Image

from tests.integration.conftest import API_KEY, start_server

OTHER_KEY = "integration-other-key-0123456789"
REQUEST_ID = "client-trace-0001"


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (seed * 40 % 256, 90, 160)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_two_keys_sending_one_request_id_both_get_their_verdicts_stored(
    tmp_path: Path, tiny_checkpoint: Path, database_url: str
) -> None:
    server = start_server(
        tmp_path,
        tiny_checkpoint,
        VERACITY_API_KEYS=f"{API_KEY},{OTHER_KEY}",
        VERACITY_DATABASE_URL=database_url,
    )
    try:
        server.wait_ready()
        answers = {}
        for key, seed in ((OTHER_KEY, 1), (API_KEY, 2)):
            response = httpx.post(
                f"{server.base_url}/infer",
                files={"file": ("x.jpg", jpeg(seed), "image/jpeg")},
                headers={"X-API-Key": key, "X-Request-ID": REQUEST_ID},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            answers[key] = response.json()
        for key, answer in answers.items():
            assert (answer["stored"], answer["request_id"]) == (True, REQUEST_ID)
            stored = httpx.get(
                f"{server.base_url}/predictions/{answer['prediction_id']}",
                headers={"X-API-Key": key},
                timeout=10,
            )
            assert stored.status_code == 200, stored.text
            assert stored.json()["fake_prob"] == answer["fake_prob"]
            assert stored.json()["request_id"] == REQUEST_ID
        assert answers[API_KEY]["prediction_id"] != answers[OTHER_KEY]["prediction_id"]
        metrics = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        assert "veracity_store_failures_total{" not in metrics
    finally:
        server.stop()
