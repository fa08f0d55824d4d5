"""The V2 routes over HTTP: the protocol's shapes, and hostile requests."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import (
    API_KEY,
    assert_still_serving,
    jpeg_bytes,
    make_settings,
    started_client,
)

AUTH = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path) -> Iterator[TestClient]:
    settings = make_settings(tiny_checkpoint, batch_max_files=3, max_upload_mb=0.5)
    yield from started_client(settings)


def binary_body(*elements: bytes, shape: list[int] | None = None, **extra) -> tuple[bytes, dict]:
    data = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    header = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": shape or [len(elements)],
                "parameters": {"binary_data_size": len(data)},
            }
        ]
    } | extra
    head = json.dumps(header).encode()
    return head + data, {"Inference-Header-Content-Length": str(len(head))}


def post(client: TestClient, body: bytes | dict, headers: dict | None = None, model="tiny"):
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    return client.post(f"/v2/models/{model}/infer", content=content, headers=AUTH | (headers or {}))


def json_request(*images: bytes, **tensor) -> dict:
    return {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [len(images)],
                "data": [base64.b64encode(i).decode() for i in images],
            }
            | tensor
        ]
    }


def assert_v2_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert fragment in body["error"], body["error"]
    assert response.headers["x-request-id"]


def test_json_request_and_response(client: TestClient) -> None:
    response = post(client, json_request(jpeg_bytes(seed=1)) | {"id": "abc"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == "abc"
    assert body["model_name"] == "tiny"
    assert body["parameters"]["request_id"] == response.headers["x-request-id"]
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["fake_prob"]["datatype"] == "FP64"
    assert outputs["fake_prob"]["shape"] == [1]
    assert outputs["fake_prob"]["data"][0] + outputs["real_prob"]["data"][0] == pytest.approx(1)
    # Recorded like any other answer.
    stored = client.get(f"/predictions/{outputs['prediction_id']['data'][0]}", headers=AUTH)
    assert stored.status_code == 200
    assert stored.json()["fake_prob"] == outputs["fake_prob"]["data"][0]


def test_binary_request_and_response(client: TestClient) -> None:
    body, headers = binary_body(
        jpeg_bytes(seed=1), jpeg_bytes(seed=2), parameters={"binary_data_output": True}
    )
    response = post(client, body, headers)
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:length])
    tail = response.content[length:]
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sum(sizes) == len(tail)
    fake = struct.unpack("<2d", tail[: sizes[0]])
    assert all(0 <= p <= 1 for p in fake)


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [
        (b"{not json", {}, 400, "JSON is malformed"),
        (b"[1, 2]", {}, 400, "must be a JSON object"),
        (b'{"inputs": []}', {}, 400, "has 0 inputs"),
        (json.dumps({"inputs": [{}, {}]}).encode(), {}, 400, "has 2 inputs"),
        (b"{}", {"Inference-Header-Content-Length": "999"}, 400, "the body has 2 bytes"),
        (b"{}", {"Inference-Header-Content-Length": "-1"}, 400, "whole number"),
        (b"{}", {"Inference-Header-Content-Length": "0"}, 400, "the body has 2 bytes"),
    ],
)
def test_malformed_bodies(client: TestClient, body, headers, status, fragment) -> None:
    assert_v2_error(post(client, body, headers), status, fragment)


@pytest.mark.parametrize(
    ("tensor", "status", "fragment"),
    [
        ({"datatype": "FP32"}, 400, "datatype 'FP32'"),
        ({"name": "pixels"}, 400, "input 'pixels' is not an input"),
        ({"shape": [2]}, 400, "has 1 elements but its shape says 2"),
        ({"shape": [1, 3]}, 400, "must be [N] or [N, 1]"),
        ({"shape": [0]}, 400, "at least one image"),
        ({"shape": "1"}, 400, "needs a shape"),
        ({"shape": [True]}, 400, "needs a shape"),
        ({"shape": [4]}, 413, "at most 3"),
        ({"data": ["***"]}, 400, "not base64"),
        ({"data": [1]}, 400, "list of base64 strings"),
        ({"data": [""]}, 400, "is empty"),
        ({"parameters": {"binary_data_size": 5}}, 400, "both data and binary_data_size"),
        ({"parameters": "x"}, 400, "must be a JSON object"),
    ],
)
def test_bad_tensors(client: TestClient, tensor, status, fragment) -> None:
    request = json_request(jpeg_bytes(), **tensor)
    assert_v2_error(post(client, request), status, fragment)


def test_bad_binary_data(client: TestClient) -> None:
    image = jpeg_bytes()
    body, headers = binary_body(image)
    assert_v2_error(post(client, body + b"x", headers), 400, "binary_data_size")
    truncated, headers = binary_body(image)
    head_length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(truncated[:head_length])
    header["inputs"][0]["parameters"]["binary_data_size"] = 10
    head = json.dumps(header).encode()
    lying = head + struct.pack("<I", 1000) + b"abcdef"
    assert_v2_error(
        post(client, lying, {"Inference-Header-Content-Length": str(len(head))}),
        400,
        "declares 1000 bytes",
    )
    two, headers = binary_body(image, image, shape=[1])
    assert_v2_error(post(client, two, headers), 400, "beyond its 1 elements")
    assert_v2_error(
        post(client, b"{}" + b"\x00" * 10, {"Inference-Header-Content-Length": "2"}),
        400,
        "has 0 inputs",
    )


def test_huge_elements_and_bodies(client: TestClient) -> None:
    big = b"\xff" * (600 * 1024)  # above the 0.5 MB upload limit
    body, headers = binary_body(big)
    assert_v2_error(post(client, body, headers), 413, "upload limit")
    # A declared length beyond the route's limit is refused before a byte is read.
    response = client.post(
        "/v2/models/tiny/infer",
        content=b"{}",
        headers=AUTH | {"Content-Length": str(10**10)},
    )
    assert response.status_code == 413
    assert isinstance(response.json()["error"], str)


def test_bad_images_and_outputs(client: TestClient) -> None:
    assert_v2_error(post(client, json_request(b"not an image")), 422, "not a readable image")
    request = json_request(jpeg_bytes(), b"not an image")
    assert_v2_error(post(client, request), 422, "element 1 of input 'image'")
    bad_outputs = [
        ([{"name": "logits"}], "not an output"),
        ([{"name": "verdict"}, {"name": "verdict"}], "requested twice"),
        ([{"name": "verdict", "parameters": {"binary_data": "yes"}}], "true or false"),
        ([], "must be a list"),
    ]
    for outputs, fragment in bad_outputs:
        assert_v2_error(
            post(client, json_request(jpeg_bytes()) | {"outputs": outputs}), 400, fragment
        )
    assert_v2_error(post(client, json_request(jpeg_bytes()) | {"id": 5}), 400, "id must be")
    assert_still_serving(client)


def test_auth_and_unknown_models(client: TestClient) -> None:
    response = client.post("/v2/models/tiny/infer", content=b"{}")
    assert_v2_error(response, 401, "missing API key")
    assert_v2_error(post(client, json_request(jpeg_bytes()), model="nope"), 404, "no model")
    assert_v2_error(client.get("/v2/models/nope", headers=AUTH), 404, "no model")
    response = client.get("/v2/models/tiny/versions/9/ready", headers=AUTH)
    assert_v2_error(response, 404, "no usable version")
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert_v2_error(client.get("/v2/no/such/route"), 404, "no such endpoint")
    # The project's own routes keep their error shape.
    assert set(client.get("/models/nope", headers=AUTH).json()["error"]) == {
        "code",
        "message",
        "request_id",
    }
