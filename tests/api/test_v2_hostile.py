"""V2 bodies that used to answer 500: each is a client's mistake, answered 400 in the V2
error shape, and the server serves on."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import API_KEY, jpeg_bytes, make_settings, started_client
from veracity.errors import BadRequestError
from veracity.oip.codec import Limits, parse_request

AUTH = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path) -> Iterator[TestClient]:
    yield from started_client(make_settings(tiny_checkpoint, batch_max_files=3))


def request(**extra) -> dict:
    image = base64.b64encode(jpeg_bytes(seed=1)).decode()
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]}
    return {"inputs": [tensor]} | extra


def post(client: TestClient, content: bytes, headers: dict | None = None):
    return client.post("/v2/models/tiny/infer", content=content, headers=AUTH | (headers or {}))


def assert_400(response, fragment: str) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert fragment in body["error"], body["error"]
    return body["error"]


@pytest.mark.parametrize(
    "length",
    [
        "\u00b2",  # SUPERSCRIPT TWO: str.isdigit() says yes, int() says no
        "1\u00b3",
        "\u0661\u0662",  # ARABIC-INDIC ONE TWO: int() takes them, but they are not ASCII
        "9" * 5000,  # beyond int()'s digit limit
        "+12",
        " 12",
    ],
)
def test_header_lengths_that_are_not_ascii_digits(length: str) -> None:
    # Parsed directly: the test client re-encodes a Latin-1 header byte as UTF-8, so "²"
    # does not reach the app as "²" (tests/integration/test_corrupt_version.py sends it
    # to a real server).
    body = json.dumps(request()).encode()
    with pytest.raises(BadRequestError, match="Inference-Header-Content-Length"):
        parse_request(body, length, Limits(max_items=3, max_item_bytes=2**20))


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000,  # the parser's recursion limit
        json.dumps(
            request(
                parameters={
                    "x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
                }
            )
        ).encode(),
        b'{"inputs": [{"name": ' + b"[" * 900 + b"]" * 900 + b"}]}",  # parses; repr would not
    ],
    ids=["100k-brackets", "deep-parameters", "deep-name"],
)
def test_deeply_nested_json(client: TestClient, content: bytes) -> None:
    assert_400(post(client, content), "nests too deeply")


@pytest.mark.parametrize(
    "name",
    [["x"], {"a": 1}, 7, None, True],
)
def test_output_names_that_are_not_strings(client: TestClient, name: object) -> None:
    body = json.dumps(request(outputs=[{"name": name}])).encode()
    assert_400(post(client, body), "is not an output of this model")


def test_client_values_are_quoted_short(client: TestClient) -> None:
    long_name = "n" * 200_000
    for field, body in (
        ("input", {"inputs": [{"name": long_name, "datatype": "BYTES", "shape": [1]}]}),
        ("datatype", {"inputs": [{"name": "image", "datatype": long_name, "shape": [1]}]}),
        ("output", request(outputs=[{"name": long_name}])),
        ("shape", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1] * 50_000}]}),
    ):
        message = assert_400(post(client, json.dumps(body).encode()), "")
        assert len(message) < 400, (field, len(message))


def test_the_server_serves_on(client: TestClient) -> None:
    post(client, b"[" * 100_000)
    response = post(client, json.dumps(request()).encode())
    assert response.status_code == 200, response.text
