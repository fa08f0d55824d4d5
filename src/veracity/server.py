"""Running the app under uvicorn: the one entry point for a laptop, a container and a pod."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator
from types import FrameType

import uvicorn

from veracity.api.app import create_app
from veracity.logs import configure_logging, logging_config
from veracity.settings import Settings
from veracity.tracing.provider import Tracing

logger = logging.getLogger("veracity.server")


class _Server(uvicorn.Server):
    """Fails readiness the moment a shutdown signal arrives, before connections drain."""

    def __init__(self, config: uvicorn.Config, on_exit_signal: object) -> None:
        super().__init__(config)
        self._on_exit_signal = on_exit_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if callable(self._on_exit_signal):
            self._on_exit_signal()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the captured SIGTERM once shutdown is done, so the process
            # dies "by signal". A drained, orderly shutdown exits 0 instead, as servers do.
            self._captured_signals.clear()


def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit status."""
    configure_logging(settings.log_level)
    # The standard OTEL_* variables, read once here like the settings: off unless they
    # name an exporter.
    app = create_app(settings, tracing=Tracing.from_environment())
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=logging_config(settings.log_level),
        access_log=False,
        # In-flight requests get this long to finish after SIGTERM; the lifespan then
        # drains the model service and releases the model.
        timeout_graceful_shutdown=int(settings.shutdown_drain_s) or None,
        server_header=False,
        proxy_headers=False,
        # Named rather than "auto": uvicorn would switch to uvloop and httptools wherever
        # they happen to be installed (a test client pulls them in), and the limits on
        # bodies, disconnects and timeouts are tested on this pair.
        loop="asyncio",
        http="h11",
    )
    server = _Server(config, on_exit_signal=app.state.model_service.begin_shutdown)
    logger.info("starting", extra={"host": settings.host, "port": settings.port})
    server.run()
    return 0 if server.started else 1
