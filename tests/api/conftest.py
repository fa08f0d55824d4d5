from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from veracity.api.app import create_app
from veracity.logs import configure_logging
from veracity.settings import Settings

API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "rotated-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"  # for settings with admin_api_keys=ADMIN_KEY


def make_settings(checkpoint: Path, **overrides) -> Settings:
    values = {
        # Each app its own results database, removed with the system's temporary files.
        "data_dir": tempfile.mkdtemp(prefix="veracity-test-store-"),
        "api_keys": f"{API_KEY},{OTHER_KEY}",
        "checkpoint": checkpoint,
        "device": "cpu",
        "inference_threads": 2,
        "torch_threads": 1,
        "shutdown_drain_s": 5,
        "max_upload_mb": 1,
        "max_image_pixels": 4_000_000,
        # The suite shares two cores with PostgreSQL and whole servers: a store call can
        # stall past the 3 s production deadline (a delete was answered 503 once under
        # full-suite load). Tests of the deadline itself set their own.
        "store_timeout_s": 15,
    } | overrides
    return Settings(_env_file=None, **values)


def started_client(settings: Settings, **app_kwargs) -> Iterator[TestClient]:
    app = create_app(settings, **app_kwargs)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.portal.call(app.state.model_service.wait_ready)
        yield client


# `with serving(settings) as client:` for tests that need their own settings.
serving = contextlib.contextmanager(started_client)


@pytest.fixture
def client(tiny_checkpoint: Path) -> Iterator[TestClient]:
    yield from started_client(make_settings(tiny_checkpoint))


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict]]]:
    """Configure the service's JSON logging for one test; returns a reader of its lines."""
    configure_logging("INFO")
    buffer = io.StringIO()
    (handler,) = logging.getLogger("veracity").handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)

    def read() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield read
    for name in ("veracity", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger().handlers.clear()


def jpeg_bytes(width: int = 320, height: int = 240, seed: int = 0, **params) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", **params)
    return buffer.getvalue()


def infer(client: TestClient, data: bytes, *, key: str | None = API_KEY, name: str = "x.jpg", **kw):
    headers = {"X-API-Key": key} if key is not None else {}
    headers |= kw.pop("headers", {})
    return client.post("/infer", files={"file": (name, data, "image/jpeg")}, headers=headers, **kw)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    assert "/site-packages/" not in response.text
    return body["error"]


def assert_still_serving(client: TestClient) -> None:
    response = infer(client, jpeg_bytes(seed=99))
    assert response.status_code == 200, response.text
