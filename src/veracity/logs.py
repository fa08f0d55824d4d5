"""JSON logging with the current request's ID on every line, and the trace's IDs where
one is active.

The request ID lives in a context variable set by the request-ID middleware; a logging
filter copies it onto each record, so log calls anywhere (including library code running
in the request's task) carry it without passing it around. The current span lives in
OpenTelemetry's context variable the same way; a second filter adds ``trace_id`` and
``span_id`` to each line written while a span is active, so a log line leads to its trace.
``run_in_executor`` does not copy context, so the model service copies it explicitly when
it hands work to a thread.
"""

from __future__ import annotations

import logging
import logging.config
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

REQUEST_ID: ContextVar[str | None] = ContextVar("veracity_request_id", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class TraceContextFilter(logging.Filter):
    """Adds the active span's ``trace_id`` and ``span_id`` (hex, as trace viewers show them);
    a line written outside any span keeps its shape."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: JSON to stderr for our loggers and uvicorn's."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["request_id", "trace_context"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "trace_context": {"()": TraceContextFilter},
        },
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "timestamp": False,
            }
        },
        "handlers": {"stderr": handler},
        "loggers": {
            "veracity": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # The request-ID middleware writes one access line per request, with the ID;
            # uvicorn's own access log would be a second, ID-less line.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def configure_logging(level: str) -> None:
    logging.config.dictConfig(logging_config(level))
