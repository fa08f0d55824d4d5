"""Auth hardening, per-key limits and response hygiene."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.api.conftest import (
    API_KEY,
    OTHER_KEY,
    assert_error,
    assert_still_serving,
    infer,
    jpeg_bytes,
    make_settings,
    serving,
)
from veracity.api.auth import key_id
from veracity.api.middleware import SECURITY_HEADERS

UPLOAD = {"file": ("x.jpg", jpeg_bytes(), "image/jpeg")}


def assert_401(response, *, mentions: str) -> None:
    error = assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
    assert mentions in error["message"]


@pytest.mark.parametrize("param", ["api_key", "apikey", "key", "token", "X-API-KEY"])
def test_a_key_in_the_url_is_refused_even_with_a_valid_header(client, param: str) -> None:
    response = client.post(
        f"/infer?{param}={API_KEY}", files=UPLOAD, headers={"X-API-Key": API_KEY}
    )
    assert_401(response, mentions="rotate the exposed key")
    assert_still_serving(client)


@pytest.mark.parametrize("scheme", ["Bearer", "ApiKey", "Basic"])
def test_a_key_in_authorization_is_refused_with_directions(client, scheme: str) -> None:
    response = client.post("/infer", files=UPLOAD, headers={"Authorization": f"{scheme} {API_KEY}"})
    assert_401(response, mentions="X-API-Key header, not in Authorization")


@pytest.mark.parametrize("keys", [(API_KEY, API_KEY), (API_KEY, OTHER_KEY), ("x", API_KEY)])
def test_duplicated_key_headers_are_refused(client, keys: tuple[str, str]) -> None:
    headers = [("X-API-Key", keys[0]), ("x-api-key", keys[1])]
    response = client.post("/infer", files=UPLOAD, headers=headers)
    assert_401(response, mentions="exactly one X-API-Key")


def test_model_metadata_needs_a_key_too(client) -> None:
    assert_401(client.get("/model"), mentions="missing API key")
    assert client.get("/model", headers={"X-API-Key": OTHER_KEY}).status_code == 200


def test_rate_limit_is_per_key_with_retry_after(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint, rate_limit="2/minute")) as client:
        assert [infer(client, jpeg_bytes()).status_code for _ in range(2)] == [200, 200]
        limited = infer(client, jpeg_bytes())
        error = assert_error(limited, 429, "rate_limited")
        assert "2 per 1 minute" in error["message"]
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # Another key has its own allowance; an invalid key is 401, not 429.
        assert infer(client, jpeg_bytes(), key=OTHER_KEY).status_code == 200
        assert infer(client, jpeg_bytes(), key="wrong-key-0123456789").status_code == 401
        text = client.get("/metrics").text
        assert (
            f'veracity_throttled_requests_total{{key_id="{key_id(API_KEY)}",'
            f'limit="rate_limited"}} 1.0'
        ) in text
        assert API_KEY not in text


def test_daily_quota_answers_429_until_the_window_renews(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint, daily_quota=1)) as client:
        assert client.get("/model", headers={"X-API-Key": API_KEY}).status_code == 200
        over = infer(client, jpeg_bytes())
        error = assert_error(over, 429, "quota_exceeded")
        assert "daily quota of 1" in error["message"]
        assert 86_000 < int(over.headers["retry-after"]) <= 86_400
        assert infer(client, jpeg_bytes(), key=OTHER_KEY).status_code == 200


def test_probes_are_never_rate_limited(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint, rate_limit="1/minute")) as client:
        assert all(client.get("/ready").status_code == 200 for _ in range(5))
        assert all(client.get("/health").status_code == 200 for _ in range(5))


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("post", "/infer", {"files": UPLOAD, "headers": {"X-API-Key": API_KEY}}, 200),
        ("post", "/infer", {"files": UPLOAD}, 401),
        ("post", "/infer", {"content": b"x" * (2 << 20), "headers": {"X-API-Key": API_KEY}}, 413),
        ("get", "/no/such/path", {}, 404),
        ("get", "/health", {}, 200),
        ("get", "/metrics", {}, 200),
        ("get", "/docs", {}, 200),
        ("get", "/openapi.json", {}, 200),
    ],
)
def test_every_response_carries_the_security_headers(
    client, method: str, path: str, kwargs: dict, status: int
) -> None:
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS:
        assert response.headers[name] == value
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"


def test_swagger_ui_loads_nothing_from_another_origin(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls, page.text
    assert all(url.startswith("/docs/assets/") for url in urls), urls
    assert "//" not in "".join(urls)
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
    js = client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200
    assert "SwaggerUIBundle" in js.text
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200


def test_docs_off_also_removes_the_assets(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint, docs_enabled=False)) as client:
        assert_error(client.get("/docs/assets/swagger-ui-bundle.js"), 404, "not_found")
