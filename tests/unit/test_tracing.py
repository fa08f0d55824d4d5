"""Traces: configured by the standard OTEL_* variables only, off by default, never slowed by
a collector that does not answer; the W3C context a job and a webhook carry; the trace ID on
log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veracity.errors import ConfigurationError
from veracity.logs import logging_config
from veracity.tracing import context_of, current_traceparent, inject_traceparent
from veracity.tracing import provider as tracing_provider
from veracity.tracing.provider import Tracing


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the OTEL_* variables it sets."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def recorded() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_tracing_is_off_without_an_exporter() -> None:
    tracing = Tracing.from_environment()
    assert not tracing.enabled
    assert tracing.provider is None
    assert isinstance(tracing.tracer, trace.NoOpTracer)
    with tracing.tracer.start_as_current_span("x") as span:
        assert not span.is_recording()


@pytest.mark.parametrize(
    "variables",
    [
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_TRACES_EXPORTER": ""},
    ],
)
def test_none_and_sdk_disabled_keep_it_off(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert not Tracing.from_environment().enabled


def test_console_is_on_with_the_service_name_and_the_sampler_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    tracing = Tracing.from_environment()
    assert tracing.provider is not None
    assert tracing.provider.resource.attributes["service.name"] == "veracity"
    assert "TraceIdRatioBased{0.1}" in tracing.provider.sampler.get_description()
    assert [type(e) for e in tracing._exporters] == [ConsoleSpanExporter]


def test_the_standard_variables_name_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "veracity-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod")
    tracing = Tracing.from_environment()
    assert tracing.provider is not None
    attributes = tracing.provider.resource.attributes
    assert attributes["service.name"] == "veracity-eu"
    assert attributes["deployment.environment.name"] == "prod"


def test_console_writes_one_json_line_per_span(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    tracing = Tracing.from_environment()
    tracing.start()
    with tracing.tracer.start_as_current_span("quick look"):
        pass
    asyncio.run(tracing.stop())
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["name"] == "quick look"


def test_otlp_goes_over_http_to_the_endpoint_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.test:4318")
    (exporter,) = Tracing.from_environment()._exporters
    assert isinstance(exporter, OTLPSpanExporter)
    assert exporter._endpoint == "http://collector.test:4318/v1/traces"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "not zipkin"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
    ],
)
def test_an_exporter_this_service_does_not_have_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        Tracing.from_environment()


@pytest.fixture
def silent_collector() -> Iterator[tuple[str, list[socket.socket]]]:
    """An OTLP endpoint on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", held
    stopping.set()
    thread.join(5)
    for connection in held:
        connection.close()
    listener.close()


def test_a_collector_that_never_answers_costs_the_spans_nothing_and_the_stop_a_bound(
    monkeypatch: pytest.MonkeyPatch, silent_collector: tuple[str, list[socket.socket]]
) -> None:
    endpoint, held = silent_collector
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")  # each export hangs that long
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    monkeypatch.setattr(tracing_provider, "SHUTDOWN_S", 1.0)
    tracing = Tracing.from_environment()
    tracing.start()
    started = time.perf_counter()
    for index in range(3000):  # more than the queue holds: the rest are dropped, not waited for
        with tracing.tracer.start_as_current_span("request", attributes={"i": index}):
            pass
    spans_s = time.perf_counter() - started
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert held, "the exporter never reached the collector: the test would prove nothing"
    started = time.perf_counter()
    asyncio.run(tracing.stop())
    stop_s = time.perf_counter() - started
    # 3000 spans take milliseconds on any machine; one blocked export would take 30 s.
    assert spans_s < 5
    assert stop_s < 3


def test_a_stored_traceparent_continues_its_trace() -> None:
    provider, exporter = recorded()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        stored = current_traceparent()
    assert current_traceparent() is None  # outside any span: nothing to carry
    ids = request.get_span_context()
    assert stored is not None
    version, trace_id, parent_id, flags = stored.split("-")
    assert (version, trace_id, parent_id) == ("00", f"{ids.trace_id:032x}", f"{ids.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    with tracer.start_as_current_span("job", context=context_of(stored)) as job:
        headers: dict[str, str] = {}
        inject_traceparent(headers)
    assert job.get_span_context().trace_id == ids.trace_id
    (finished_job,) = [s for s in exporter.get_finished_spans() if s.name == "job"]
    assert finished_job.parent is not None
    assert finished_job.parent.span_id == ids.span_id
    sent = headers["traceparent"].split("-")
    assert sent[1:3] == [f"{ids.trace_id:032x}", f"{job.get_span_context().span_id:016x}"]


@pytest.mark.parametrize("stored", [None, "", "not-a-traceparent"])
def test_a_job_without_a_usable_traceparent_starts_a_trace_of_its_own(
    stored: str | None,
) -> None:
    provider, exporter = recorded()
    tracer = provider.get_tracer("test")
    # Even under another span (a worker's loop), the job's starts a trace of its own.
    with (
        tracer.start_as_current_span("poll loop"),
        tracer.start_as_current_span("job", context=context_of(stored)),
    ):
        pass
    job = next(s for s in exporter.get_finished_spans() if s.name == "job")
    assert job.parent is None


def test_log_lines_carry_the_trace_while_a_span_is_active() -> None:
    config = logging_config("INFO")
    logging.config.dictConfig(config)
    stream = io.StringIO()
    (handler,) = logging.getLogger("veracity").handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        provider, _ = recorded()
        log = logging.getLogger("veracity.test")
        with provider.get_tracer("test").start_as_current_span("request") as span:
            log.info("inside")
        log.info("outside")
    finally:
        for name in ("veracity", "uvicorn"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
        logging.getLogger().handlers.clear()
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in outside
    assert "span_id" not in outside
