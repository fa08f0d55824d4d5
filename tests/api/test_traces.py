"""Traces through the app: an /infer request's spans and their attributes, the request ID on
the server span and the trace ID on its log lines, a job's trace carried through the
database into its run and its webhook, and no tracing at all unless asked for."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.api.conftest import API_KEY, infer, jpeg_bytes, make_settings, serving
from tests.api.test_jobs import Receiver, post_video_job, wait_webhook, webhook_settings
from tests.videofiles import write_video
from veracity.api.auth import key_id
from veracity.callers import Caller
from veracity.tracing.provider import Tracing


class Traced:
    """An in-memory exporter behind the app's provider, read after each request."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = Tracing(provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def trace_of(self, server: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.context.trace_id == server.context.trace_id]

    def server_span(self, route: str, *, wait_s: float = 10) -> ReadableSpan:
        # The server span ends just after the response is sent: wait for it, bounded.
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            found = [s for s in self.spans() if s.kind is SpanKind.SERVER and s.name == route]
            if found:
                return found[-1]
            time.sleep(0.01)
        raise AssertionError(f"no server span {route!r}: {[s.name for s in self.spans()]}")


@pytest.fixture
def traced() -> Traced:
    return Traced()


@pytest.fixture
def traced_client(tiny_checkpoint: Path, traced: Traced) -> Iterator[TestClient]:
    with serving(make_settings(tiny_checkpoint), tracing=traced.tracing) as client:
        yield client


def by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def test_an_image_request_is_one_trace_of_decoding_waiting_the_pass_the_gates_and_the_store(
    traced_client: TestClient, traced: Traced
) -> None:
    response = infer(traced_client, jpeg_bytes(), headers={"X-Request-ID": "trace-me-1"})
    assert response.status_code == 200, response.text
    server = traced.server_span("POST /infer")
    assert server.attributes is not None
    assert server.attributes["veracity.request_id"] == "trace-me-1"
    assert server.attributes["http.route"] == "/infer"
    spans = by_name(traced.trace_of(server))
    for name in (
        "cache.lookup",
        "store.cache_lookup",
        "image.decode",
        "batcher.queue",
        "model.forward",
        "verdict.gates",
        "store.record",
    ):
        assert name in spans, (name, sorted(spans))
    # The steps of the request are the server span's children, the cache's read is the
    # lookup's.
    for name in ("cache.lookup", "image.decode", "batcher.queue", "model.forward"):
        (span,) = spans[name]
        assert span.parent is not None, name
        assert span.parent.span_id == server.context.span_id, name
    (lookup,) = spans["cache.lookup"]
    (read,) = spans["store.cache_lookup"]
    assert read.parent is not None
    assert read.parent.span_id == lookup.context.span_id
    assert read.kind is SpanKind.CLIENT
    assert read.attributes is not None
    assert read.attributes["db.system.name"] == "sqlite"
    (forward,) = spans["model.forward"]
    assert forward.attributes is not None
    assert forward.attributes["veracity.batch.size"] == response.json()["batch_size"] == 1
    assert forward.attributes["veracity.model.version"] == response.json()["model_version"]
    (gates,) = spans["verdict.gates"]
    assert gates.attributes is not None
    assert gates.attributes["veracity.verdict"] == response.json()["verdict"]
    (record,) = spans["store.record"]
    assert record.end_time is not None
    assert server.end_time is not None
    assert record.end_time <= server.end_time
    # No span of ours outside the request's trace.
    assert all(s.context.trace_id == server.context.trace_id for s in traced.spans())


def test_a_cache_hit_is_traced_without_a_forward_pass(
    traced_client: TestClient, traced: Traced
) -> None:
    image = jpeg_bytes(seed=3)
    assert infer(traced_client, image).status_code == 200
    traced.exporter.clear()
    response = infer(traced_client, image)
    assert response.json()["cached"] is True
    spans = by_name(traced.trace_of(traced.server_span("POST /infer")))
    (lookup,) = spans["cache.lookup"]
    assert lookup.attributes is not None
    assert lookup.attributes["veracity.cache.hits"] == 1
    assert "model.forward" not in spans
    assert "image.decode" not in spans


def test_a_callers_traceparent_is_continued(traced_client: TestClient, traced: Traced) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    assert infer(traced_client, jpeg_bytes(), headers=headers).status_code == 200
    server = traced.server_span("POST /infer")
    assert f"{server.context.trace_id:032x}" == trace_id
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == parent_id


def test_probes_and_scrapes_are_not_traced(traced_client: TestClient, traced: Traced) -> None:
    for path in ("/health", "/ready", "/metrics", "/v2/health/live"):
        assert traced_client.get(path).status_code == 200, path
    assert traced_client.get("/model", headers={"X-API-Key": API_KEY}).status_code == 200
    traced.server_span("GET /model")  # traced: the app is instrumented
    assert [s.name for s in traced.spans() if s.kind is SpanKind.SERVER] == ["GET /model"]


def test_every_log_line_of_a_request_carries_its_trace(
    traced_client: TestClient, traced: Traced, json_logs: Callable[[], list[dict]]
) -> None:
    response = infer(traced_client, jpeg_bytes(seed=5), headers={"X-Request-ID": "logged-1"})
    assert response.status_code == 200
    server = traced.server_span("POST /infer")
    lines = [line for line in json_logs() if line.get("request_id") == "logged-1"]
    assert any(line["message"] == "request" for line in lines)  # the access line, at least
    for line in lines:
        assert line["trace_id"] == f"{server.context.trace_id:032x}", line
        assert line["span_id"]


def test_tracing_is_off_unless_asked_for(
    tiny_checkpoint: Path, json_logs: Callable[[], list[dict]]
) -> None:
    with serving(make_settings(tiny_checkpoint)) as client:
        assert not client.app.state.tracing.enabled  # type: ignore[attr-defined]
        assert infer(client, jpeg_bytes(), headers={"X-Request-ID": "untraced-1"}).status_code
        stack = client.app.middleware_stack  # type: ignore[attr-defined]
        layers = []
        while stack is not None:
            layers.append(type(stack))
            stack = getattr(stack, "app", None)
    assert OpenTelemetryMiddleware not in layers  # no middleware that records nothing
    lines = [line for line in json_logs() if line.get("request_id") == "untraced-1"]
    assert lines
    assert all("trace_id" not in line for line in lines)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_job_and_its_webhook_continue_the_trace_of_the_request_that_made_it(
    tiny_checkpoint: Path, traced: Traced, receiver: Receiver
) -> None:
    settings = webhook_settings(tiny_checkpoint)
    with serving(settings, tracing=traced.tracing) as client:
        response = post_video_job(
            client, write_video(seconds=1.0), frames=2, webhook_url=receiver.url
        )
        assert response.status_code == 202, response.text
        job = wait_webhook(client, response.json()["url"])
        assert job["webhook"]["status"] == "delivered"
        stored = client.portal.call(
            client.app.state.job_runner.queue.get,  # type: ignore[attr-defined]
            job["job_id"],
            Caller(key_id=key_id(API_KEY), admin=False),
        )
    created = traced.server_span("POST /jobs/video")
    trace_id = f"{created.context.trace_id:032x}"
    # The job row holds the creating request's traceparent.
    assert stored.traceparent is not None
    assert stored.traceparent.split("-")[1:3] == [trace_id, f"{created.context.span_id:016x}"]
    spans = by_name(traced.trace_of(created))
    (run,) = spans["job.run"]
    (deliver,) = spans["webhook.deliver"]
    for span in (run, deliver):
        assert span.parent is not None
        assert span.parent.span_id == created.context.span_id
    assert run.kind is SpanKind.CONSUMER
    assert run.attributes is not None
    assert run.attributes["veracity.job.id"] == job["job_id"]
    assert run.attributes["veracity.job.outcome"] == "done"
    assert run.attributes["veracity.request_id"] == response.headers["x-request-id"]
    # The job's judging is inside its run: the video's frames went through the batcher.
    analyse = spans["video.analyse"][0]
    assert analyse.parent is not None
    assert analyse.parent.span_id == run.context.span_id
    assert "model.forward" in spans
    assert deliver.attributes is not None
    assert deliver.attributes["veracity.webhook.outcome"] == "delivered"
    # The receiver was sent the delivery's own traceparent.
    ((headers, _),) = receiver.calls
    sent = {k.lower(): v for k, v in headers.items()}["traceparent"].split("-")
    assert sent[1:3] == [trace_id, f"{deliver.context.span_id:016x}"]
