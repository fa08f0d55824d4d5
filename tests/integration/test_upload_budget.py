"""Request bodies count against the replica's body budget as their bytes arrive, until they
are answered: while one large upload holds most of it, the next one is refused once its
bytes would pass the budget (503, the rest unread), on every upload route, /jobs/* and /v2
included; once the first is answered there is room again; and a body that trickles in holds
only what it sent."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import jpeg_bytes
from tests.integration.conftest import API_KEY, Server, start_server

BUDGET_MB = 4
HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture
def server(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Server]:
    server = start_server(tmp_path, tiny_checkpoint, VERACITY_BODY_BUDGET_MB=str(BUDGET_MB))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def multipart(field: str, data: bytes) -> bytes:
    return (
        (
            f'--zzz\r\nContent-Disposition: form-data; name="{field}"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + b"\r\n--zzz--\r\n"
    )


def head(path: str, length: int, content_type: str = "multipart/form-data; boundary=zzz") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def connect(server: Server) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send what the server will take; it may answer and stop reading half-way."""
    with contextlib.suppress(OSError):
        sock.sendall(data)


def test_uploads_beyond_the_body_budget_wait_for_room(server: Server) -> None:
    # 3 MB of a 4 MB budget: a JPEG with padding after its end, which decoders ignore.
    big = multipart("file", jpeg_bytes() + b"\x00" * (3 * 2**20))
    with connect(server) as first:
        first.sendall(head("/infer", len(big)) + big[: 3 * 2**20])  # most of it, then a pause
        time.sleep(0.5)
        for path in ("/infer", "/infer/batch", "/jobs/batch", "/v2/models/tiny/infer"):
            content_type = (
                "application/json"
                if path.startswith("/v2")
                else "multipart/form-data; boundary=zzz"
            )
            with connect(server) as second:
                # Refused once its bytes would pass the budget, mid-body, not read to the end.
                second.settimeout(30)
                send_all(second, head(path, len(big), content_type) + big)
                refused = answer(second)
            assert refused.startswith(b"HTTP/1.1 503"), (path, refused[:400])
            # The project's error shape (code "overloaded"); /v2 has the protocol's own.
            assert path.startswith("/v2") or b'"overloaded"' in refused
            assert b"VERACITY_BODY_BUDGET_MB" in refused
            assert b"retry-after" in refused.lower()
        first.sendall(big[3 * 2**20 :])
        served = answer(first)
    assert served.startswith(b"HTTP/1.1 200"), served[:400]
    # The first upload was answered: its bytes left the budget.
    response = httpx.post(
        f"{server.base_url}/infer",
        files={"file": ("a.jpg", jpeg_bytes() + b"\x00" * (3 * 2**20), "image/jpeg")},
        headers=HEADERS,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    metrics = httpx.get(f"{server.base_url}/metrics", headers=HEADERS, timeout=10).text
    assert 'reason="body_budget"' in metrics


def test_a_body_that_trickles_in_holds_only_what_it_sent(server: Server) -> None:
    """Declaring a large body and sending it slowly reserves nothing it has not sent, so a
    few such clients cannot fill the budget and shut everyone else out."""
    big = multipart("files", jpeg_bytes() + b"\x00" * (3 * 2**20))
    sockets = [connect(server) for _ in range(3)]
    try:
        for sock in sockets:  # 9 MB declared in all, against a 4 MB budget
            sock.sendall(head("/jobs/batch", len(big)) + big[:1000])
        time.sleep(0.5)
        response = httpx.post(
            f"{server.base_url}/infer",
            files={"file": ("a.jpg", jpeg_bytes() + b"\x00" * (3 * 2**20), "image/jpeg")},
            headers=HEADERS,
            timeout=30,
        )
        assert response.status_code == 200, response.text
    finally:
        for sock in sockets:
            sock.close()
