"""The service as a real process: `veracity serve` on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import jpeg_bytes
from tests.integration.conftest import API_KEY, Server, start_server


def test_starts_becomes_ready_and_predicts(server: Server) -> None:
    health = httpx.get(f"{server.base_url}/health", timeout=5)
    assert health.json() == {"status": "ok", "model_loaded": True, "checkpoint_exists": True}
    response = httpx.post(
        f"{server.base_url}/infer",
        files={"file": ("frame.jpg", jpeg_bytes(640, 360), "image/jpeg")},
        headers={"X-API-Key": API_KEY, "X-Request-ID": "integration-1"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == "integration-1"
    assert body["fake_prob"] + body["real_prob"] == pytest.approx(1.0)
    docs = httpx.get(f"{server.base_url}/docs", timeout=5)
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=5).text
    assert "veracity_inference_seconds_count 1.0" in metrics
    assert server.stop() == 0
    logs = server.logs()
    access = [
        line
        for line in logs
        if line.get("logger") == "veracity.access" and line["path"] == "/infer"
    ]
    assert access[0]["request_id"] == "integration-1"
    assert access[0]["status"] == 200
    assert all(API_KEY not in json.dumps(line) for line in logs)


def test_healthcheck_command_follows_the_server(server: Server) -> None:
    port = server.base_url.rsplit(":", 1)[1]
    command = [sys.executable, "-m", "veracity", "healthcheck", "--port", port]
    assert subprocess.run(command, timeout=60, check=False).returncode == 0
    assert server.stop() == 0
    assert subprocess.run(command, timeout=60, check=False).returncode == 1


def test_sigterm_lets_an_in_flight_request_finish(server: Server) -> None:
    image = jpeg_bytes(1280, 720, seed=5)
    boundary = "veracityboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    first_chunk_sent = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield head
        first_chunk_sent.set()
        chunk = len(image) // 10 + 1
        for i in range(0, len(image), chunk):
            time.sleep(0.1)  # the upload is still arriving when SIGTERM lands
            yield image[i : i + chunk]
        yield tail

    result: dict[str, httpx.Response] = {}

    def send() -> None:
        result["response"] = httpx.post(
            f"{server.base_url}/infer",
            content=slow_body(),
            headers={
                "X-API-Key": API_KEY,
                "content-type": f"multipart/form-data; boundary={boundary}",
            },
            timeout=30,
        )

    sender = threading.Thread(target=send)
    sender.start()
    assert first_chunk_sent.wait(10)
    time.sleep(0.2)
    os.killpg(server.process.pid, signal.SIGTERM)
    sender.join(30)
    response = result["response"]
    assert response.status_code == 200, response.text
    assert server.process.wait(timeout=30) == 0
    messages = [line["message"] for line in server.logs()]
    assert "shutdown started: readiness now failing" in messages
    assert "model service stopped" in messages


def test_bad_configuration_exits_with_one_clear_line(tmp_path: Path, tiny_checkpoint: Path) -> None:
    srv = start_server(tmp_path, tiny_checkpoint, VERACITY_DEVICE="gpu")
    assert srv.process.wait(timeout=60) == 2
    output = srv.log_path.read_text().strip().splitlines()
    assert output == [
        "veracity serve: invalid configuration: VERACITY_DEVICE: "
        "Input should be 'auto', 'cpu', 'cuda' or 'mps'"
    ]
