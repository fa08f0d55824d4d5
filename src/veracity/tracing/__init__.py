"""Traces: what our own spans share. The SDK is configured in ``provider`` alone (the app
imports it); this module needs only the OpenTelemetry API, so the store and the job queue
import it without loading the SDK.

Our own spans are only ever children of a span being recorded (a request's, a job's):
background loops (job polls, the "seen before" refresh) never start traces, and a request
the sampler left out costs one check per span. Spans are named after what they time
(``image.decode``, ``batcher.queue``, ``model.forward``, ``verdict.gates``, ``video.analyse``,
``cache.lookup``, ``store.<operation>``, ``job.run``, ``webhook.deliver``); our attributes are
named ``veracity.*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

# W3C Trace Context only: a job row and a webhook carry ``traceparent``, nothing else.
_PROPAGATOR = TraceContextTextMapPropagator()


@contextmanager
def child_span(
    tracer: Tracer,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
) -> Iterator[Span]:
    """A span under the current one, made current, when the current one is being recorded;
    otherwise nothing is started and the current span (which records nothing) is yielded."""
    parent = trace.get_current_span()
    if not parent.is_recording():
        yield parent
        return
    with tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
        yield span


def recording() -> Span | None:
    """The current span if it is being recorded (a sampled request's or job's), else None."""
    span = trace.get_current_span()
    return span if span.is_recording() else None


def current_traceparent() -> str | None:
    """The current span's W3C ``traceparent`` (sampled or not), None outside any trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def inject_traceparent(headers: dict[str, str]) -> None:
    """Add the current span's ``traceparent`` to outgoing ``headers`` (none outside a trace)."""
    _PROPAGATOR.inject(headers)


def context_of(traceparent: str | None) -> Context:
    """The context a stored ``traceparent`` continues: a span started in it is the child of
    the span that stored it, or the root of a new trace when there is none (or it does not
    parse)."""
    return _PROPAGATOR.extract({"traceparent": traceparent} if traceparent else {})


def tag_request(request_id: str) -> None:
    """Put the request's ID on the span that serves it (the HTTP server span)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("veracity.request_id", request_id)
