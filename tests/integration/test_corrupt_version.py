"""A real server whose repository's newest version is corrupt: it turns ready on the one
before, reports the broken one, and hostile V2 bodies get 400 from it, not 500."""

from __future__ import annotations

import base64
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import jpeg_bytes
from tests.conftest import write_tiny_checkpoint
from tests.integration.conftest import API_KEY, Server, start_server

ADMIN_KEY = "corrupt-admin-key-0123456789abcdef"
USER = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_checkpoint(root / "tiny" / "1" / "model.safetensors", seed=0)
    write_tiny_checkpoint(root / "tiny" / "2" / "model.safetensors", seed=1)
    shutil.copytree(root / "tiny" / "2", root / "tiny" / "3")
    weights = root / "tiny" / "3" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the newest version's weights no longer match their SHA-256
    weights.write_bytes(bytes(data))
    return root


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, repository: Path
) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("corrupt-server"),
        tiny_checkpoint,
        VERACITY_MODEL_REPOSITORY=str(repository),
        VERACITY_DEFAULT_MODEL="tiny",  # unpinned: the newest version that loads serves
        VERACITY_ADMIN_API_KEYS=ADMIN_KEY,
        VERACITY_MODEL_LOAD_ON_DEMAND="false",
        VERACITY_BACKEND="torch",
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_the_replica_serves_the_version_before_the_corrupt_one(
    server: Server, repository: Path
) -> None:
    listing = httpx.get(f"{server.base_url}/models/tiny", headers=USER, timeout=10)
    assert listing.status_code == 200, listing.text
    model = listing.json()
    assert model["serving_version"] == "2"
    versions = {v["version"]: v for v in model["versions"]}
    assert versions["2"]["state"] == "loaded"
    assert versions["3"]["state"] == "failed"
    assert "tiny/3/model.safetensors has SHA-256" in versions["3"]["reason"]
    assert str(repository) not in listing.text
    answer = httpx.post(
        f"{server.base_url}/infer",
        files={"file": ("a.jpg", jpeg_bytes(seed=3), "image/jpeg")},
        headers=USER,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "2"
    events = [line for line in server.logs() if line.get("message", "").startswith("newer")]
    assert events, "the fallback is logged"
    assert events[0]["model_version"] == "2"
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    assert 'veracity_model_lifecycle_total{action="fallback",outcome="ok"} 1.0' in metrics


def test_v2_readiness_says_that_only_admins_load(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/v2/models/tiny/versions/1/ready", headers=USER)
    assert response.status_code == 503
    assert "only when an admin asks" in response.json()["error"]


def raw_post(
    server: Server, path: str, headers: dict[str, bytes], body: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 request with header bytes exactly as given (clients re-encode them)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1".encode(), f"Host: {host}".encode()]
    fields = {"x-api-key": API_KEY.encode(), "content-length": str(len(body)).encode()}
    lines += [name.encode() + b": " + value for name, value in (fields | headers).items()]
    lines += [b"connection: close", b"", b""]
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"\r\n".join(lines) + body)
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    head, _, content = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), content


def v2_body(**extra: object) -> bytes:
    image = base64.b64encode(jpeg_bytes(seed=1)).decode()
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]}
    return json.dumps({"inputs": [tensor]} | extra).encode()


@pytest.mark.parametrize(
    ("headers", "body", "fragment"),
    [
        ({"inference-header-content-length": b"\xb2"}, v2_body(), "Inference-Header"),
        ({}, b"[" * 100_000, "nests too deeply"),
        ({}, v2_body(outputs=[{"name": ["x"]}]), "is not an output"),
    ],
    ids=["superscript-two-length", "100k-brackets", "list-output-name"],
)
def test_hostile_v2_bodies_get_400(
    server: Server, headers: dict[str, bytes], body: bytes, fragment: str
) -> None:
    status, content = raw_post(server, "/v2/models/tiny/infer", headers, body)
    assert status == 400, content
    error = json.loads(content)
    assert set(error) == {"error"}
    assert fragment in error["error"]
    response = httpx.post(
        f"{server.base_url}/v2/models/tiny/infer", content=v2_body(), headers=USER, timeout=30
    )
    assert response.status_code == 200, response.text
