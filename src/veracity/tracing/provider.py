"""The one place that configures the OpenTelemetry SDK: ``Tracing``, built from the standard
``OTEL_*`` variables.

Off unless ``OTEL_TRACES_EXPORTER`` names an exporter: ``otlp`` (OTLP over HTTP/protobuf,
to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``) or ``console``
(JSON spans on stdout, for a quick look); ``OTEL_SDK_DISABLED=true`` turns it off whatever
else is set. Everything else is the SDK's own reading of the standard variables: the sampler
(``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``), the resource (``OTEL_SERVICE_NAME``,
default ``veracity``; ``OTEL_RESOURCE_ATTRIBUTES``), the exporter's headers, timeout and
TLS, and the batch processor's queue (``OTEL_BSP_*``).

Nothing here is global: ``Tracing.from_environment`` builds a provider that the app owns
(the entry point hands it to ``create_app``), its export starts with the app and stops with
it, and components get a ``Tracer`` passed down, like the metrics. Export runs on the batch
processor's own thread, so a collector that is slow or gone costs a request nothing: spans
wait in a bounded queue and are dropped when it is full.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Tracer

from veracity import __version__
from veracity.errors import ConfigurationError

logger = logging.getLogger("veracity.tracing")

TRACER_NAME = "veracity"
DEFAULT_SERVICE_NAME = "veracity"
# A stopping replica gives its last spans this long to leave; a collector that does not
# answer must not hold up the exit (the SDK's own shutdown waits up to 30 s).
SHUTDOWN_S = 5.0
EXPORTERS = ("otlp", "console")
# The OTLP exporter installed is the HTTP/protobuf one (no gRPC dependency).
_OTLP_PROTOCOLS = ("http/protobuf",)


class Tracing:
    """An app's traces: its tracer provider (None: tracing is off) and the exporters whose
    batch processors ``start`` adds and ``stop`` shuts down.

    Args:
        provider: The provider to record spans with; tests pass one with an in-memory
            exporter already attached.
        exporters: Where spans go, each behind its own batch processor (never on the
            request's path).
    """

    def __init__(
        self, provider: TracerProvider | None = None, exporters: Sequence[SpanExporter] = ()
    ) -> None:
        if exporters and provider is None:
            raise ValueError("exporters need a provider")
        self.provider = provider
        self._exporters = tuple(exporters)
        self.tracer: Tracer = (
            trace.NoOpTracer()
            if provider is None
            else provider.get_tracer(TRACER_NAME, __version__)
        )

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    @classmethod
    def from_environment(cls) -> Tracing:
        """The tracing the standard ``OTEL_*`` variables ask for (see the module's
        docstring); nothing is connected or started yet.

        Raises:
            ConfigurationError: an exporter or OTLP protocol this service does not have.
        """
        names = _exporter_names()
        if not names:
            return cls()
        exporters = [_exporter(name) for name in names]
        # No exit hook: the app shuts it down, within its bound (the SDK's hook would wait
        # up to 30 s at exit for a collector that does not answer).
        provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
        return cls(provider, exporters)

    def start(self) -> None:
        """Start exporting (the app's lifespan calls it)."""
        if self.provider is None:
            return
        for exporter in self._exporters:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        logger.info(
            "tracing on",
            extra={"exporters": [type(e).__name__ for e in self._exporters]},
        )

    async def stop(self) -> None:
        """Send what is queued and stop, within ``SHUTDOWN_S`` whatever the collector does."""
        provider = self.provider
        if provider is None:
            return
        # A daemon thread: one stuck on a collector that never answers cannot keep the
        # process alive after the lifespan is done.
        done = threading.Thread(target=provider.shutdown, name="veracity-tracing-stop", daemon=True)
        done.start()
        await asyncio.to_thread(done.join, SHUTDOWN_S)
        if done.is_alive():
            # The SDK waits for its export thread before it tells the exporters to stop;
            # told now, they give up their retries instead of trying for another 30 s.
            for exporter in self._exporters:
                exporter.shutdown()
            logger.warning(
                "trace export did not finish in time; the last spans are dropped",
                extra={"timeout_s": SHUTDOWN_S},
            )


def _exporter_names() -> list[str]:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    if names == ["none"] or not names:
        return []
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={raw!r}: this service exports traces with "
            f"{' or '.join(EXPORTERS)} (or none); not {', '.join(unknown)}"
        )
    return list(dict.fromkeys(names))


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        # One line per span (the SDK's default is indented JSON), so stdout stays a stream
        # of lines beside the JSON logs; stdout as it is now (the SDK's default is the one
        # it found when it was imported).
        return ConsoleSpanExporter(
            out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in _OTLP_PROTOCOLS:
        raise ConfigurationError(
            f"OTLP protocol {protocol!r}: this service sends OTLP over http/protobuf only "
            "(a collector's port 4318); set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
        )
    # Imported here: the exporter pulls in requests and protobuf, which a service with
    # tracing off never needs.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Endpoint, headers, timeout (OTEL_EXPORTER_OTLP_TIMEOUT, default 10 s), TLS and
    # compression: the exporter reads the standard variables itself.
    return OTLPSpanExporter()


def _resource() -> Resource:
    # The SDK merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over what it is given;
    # only the defaults are ours.
    defaults = {SERVICE_VERSION: __version__}
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        defaults[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    return Resource.create(defaults)
