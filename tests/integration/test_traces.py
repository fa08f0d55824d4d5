"""Traces from a real server: the standard OTEL_* variables turn them on, the console
exporter shows them, and a collector that accepts connections but never answers neither
slows nor fails a request, nor holds up the stop."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import API_KEY, Server, serve_until_done, start_server

REQUESTS = 20


def jpeg_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def post_infer(client: httpx.Client, seed: int, request_id: str) -> httpx.Response:
    return client.post(
        "/infer",
        files={"file": ("x.jpg", jpeg_bytes(seed=seed), "image/jpeg")},
        headers={"X-API-Key": API_KEY, "X-Request-ID": request_id},
    )


def timed_requests(server: Server, prefix: str) -> list[float]:
    """REQUESTS distinct images one after the other (no cache hit): each one's seconds."""
    took = []
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for index in range(REQUESTS):
            started = time.perf_counter()
            response = post_infer(client, index, f"{prefix}-{index}")
            took.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return took


@pytest.fixture
def console_server(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Server]:
    yield from serve_until_done(
        start_server(tmp_path, tiny_checkpoint, OTEL_TRACES_EXPORTER="console")
    )


def test_the_console_exporter_prints_the_requests_spans_beside_its_log_lines(
    console_server: Server,
) -> None:
    # Two requests on one keep-alive connection: each is a trace of its own (uvicorn would
    # hand the first one's context to the second).
    with httpx.Client(base_url=console_server.base_url, timeout=30) as client:
        assert post_infer(client, 1, "console-1").status_code == 200
        assert post_infer(client, 2, "console-2").status_code == 200
    deadline = time.monotonic() + 15  # the batch processor sends every 5 s by default
    spans: list[dict] = []
    while time.monotonic() < deadline:
        spans = [line for line in console_server.logs() if "context" in line]
        if sum(s["name"] == "POST /infer" for s in spans) == 2:
            break
        time.sleep(0.2)
    requests = [s for s in spans if s["name"] == "POST /infer"]
    assert [s["kind"] for s in requests] == ["SpanKind.SERVER"] * 2
    assert [s["parent_id"] for s in requests] == [None, None]
    assert len({s["context"]["trace_id"] for s in requests}) == 2
    (server_span,) = [s for s in requests if s["attributes"]["veracity.request_id"] == "console-1"]
    assert server_span["resource"]["attributes"]["service.name"] == "veracity"
    trace_id = server_span["context"]["trace_id"].removeprefix("0x")
    names = {
        s["name"] for s in spans if s["context"]["trace_id"] == server_span["context"]["trace_id"]
    }
    assert {"image.decode", "batcher.queue", "model.forward", "verdict.gates"} <= names
    # The access line of that request carries its trace.
    (access,) = [
        line
        for line in console_server.logs()
        if line.get("message") == "request" and line.get("request_id") == "console-1"
    ]
    assert access["trace_id"] == trace_id


class SilentCollector:
    """An OTLP endpoint on 127.0.0.1 that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        for connection in self.held:
            connection.close()
        self.listener.close()


@pytest.fixture
def silent_collector() -> Iterator[SilentCollector]:
    collector = SilentCollector()
    yield collector
    collector.close()


def test_a_collector_that_never_answers_neither_slows_nor_fails_requests(
    tmp_path: Path, tiny_checkpoint: Path, silent_collector: SilentCollector
) -> None:
    # The same server without tracing is the yardstick, started and measured first.
    (tmp_path / "plain").mkdir()
    (tmp_path / "traced").mkdir()
    baseline = start_server(tmp_path / "plain", tiny_checkpoint)
    try:
        baseline.wait_ready()
        timed_requests(baseline, "warm")
        untraced = timed_requests(baseline, "plain")
    finally:
        assert baseline.stop() == 0
    traced = start_server(
        tmp_path / "traced",
        tiny_checkpoint,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=silent_collector.url,
        OTEL_TRACES_SAMPLER="always_on",
        # Every export hangs for 30 s; the processor tries one every 50 ms.
        OTEL_EXPORTER_OTLP_TIMEOUT="30",
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    try:
        traced.wait_ready()
        timed_requests(traced, "warm")
        with_collector = timed_requests(traced, "traced")
        deadline = time.monotonic() + 10
        while not silent_collector.held and time.monotonic() < deadline:
            time.sleep(0.05)
        assert silent_collector.held, "no export reached the collector: nothing was tested"
    finally:
        started = time.monotonic()
        code = traced.stop()
        stop_s = time.monotonic() - started
    assert code == 0
    # Bounded by the app's own 5 s for the last spans (plus start-up noise), never the
    # exporter's 30 s timeout.
    assert stop_s < 15, stop_s
    # One request held by an export would take 30 s; here every one is as quick as without
    # tracing, to within what a shared machine varies.
    assert max(with_collector) < 5, with_collector
    assert sorted(with_collector)[REQUESTS // 2] < 3 * sorted(untraced)[REQUESTS // 2] + 0.05
