"""Limits that only a real socket can exercise: oversized headers, trickling bodies, hang-ups."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import jpeg_bytes
from tests.integration.conftest import API_KEY, Server, start_server

BODY_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def limited_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("limits"),
        tiny_checkpoint,
        VERACITY_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def connect(server: Server) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_response(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def still_serving(server: Server) -> None:
    response = httpx.post(
        f"{server.base_url}/infer",
        files={"file": ("x.jpg", jpeg_bytes(), "image/jpeg")},
        headers={"X-API-Key": API_KEY},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def upload_head(content_length: int) -> bytes:
    return (
        b"POST /infer HTTP/1.1\r\nHost: x\r\nX-API-Key: " + API_KEY.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=zzz\r\n"
        b"Content-Length: " + str(content_length).encode() + b"\r\n\r\n"
    )


def test_a_request_head_that_keeps_growing_is_cut_off(limited_server: Server) -> None:
    # h11 refuses a request head still incomplete past 16 KB. (A head that arrives whole in
    # one read is not capped by the server: DEPLOYMENT.md sets the cap at the ingress.)
    with connect(limited_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Junk: ")
        try:
            for _ in range(70):
                sock.sendall(b"a" * 1024)
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:200]
    still_serving(limited_server)


def test_a_trickling_body_gets_408_and_the_connection_is_closed(limited_server: Server) -> None:
    part = b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
    with connect(limited_server) as sock:
        sock.sendall(upload_head(100_000) + part)
        started = time.monotonic()
        for _ in range(40):  # one byte every 0.1 s: never finishes before the deadline
            try:
                sock.sendall(b"\x00")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            if time.monotonic() - started > BODY_TIMEOUT_S + 1:
                break
        sock.settimeout(5)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"body_timeout" in answer
    assert b"connection: close" in answer.lower()
    still_serving(limited_server)


def test_a_hang_up_mid_upload_is_logged_and_costs_nothing(limited_server: Server) -> None:
    # A well-formed part head, then the hang-up inside the file's bytes: a head of zeros
    # could be refused as malformed (400) before the server saw the hang-up, under load.
    part = (
        b"--zzz\r\n"
        b'Content-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    with connect(limited_server) as sock:
        sock.sendall(upload_head(500_000) + part + b"\x00" * 1000)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        statuses = [
            line["status"]
            for line in limited_server.logs()
            if line.get("logger") == "veracity.access" and line.get("path") == "/infer"
        ]
        if 499 in statuses:
            break
        time.sleep(0.1)
    assert 499 in statuses
    still_serving(limited_server)
