"""The app factory: one FastAPI app per Settings, owning its model service and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator

from veracity import __version__
from veracity.api.auth import ApiKeyAuth, key_id
from veracity.api.console import install_console
from veracity.api.deps import RouteOptions
from veracity.api.docs import install_docs
from veracity.api.errors import install_error_handlers
from veracity.api.limits import body_limits
from veracity.api.middleware import (
    BodyBudgetMiddleware,
    BodyLimitMiddleware,
    FreshTraceContext,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from veracity.api.ratelimit import KeyLimiter
from veracity.api.routes import (
    batch,
    drift,
    health,
    infer,
    jobs,
    keys,
    models,
    predictions,
    receipts,
    v2,
    video,
    webhooks,
)
from veracity.jobs.queue import JobQueue
from veracity.jobs.runner import Execute, JobRunner, RunnerSettings
from veracity.jobs.webhooks import WebhookSender
from veracity.metrics import ServiceMetrics
from veracity.provenance.reader import CredentialReader
from veracity.receipts import ReceiptSigner
from veracity.repository.layout import ModelRepository
from veracity.serving.drift import DriftMonitor
from veracity.serving.jobs import JobExecutor
from veracity.serving.recording import Recorder
from veracity.serving.service import ModelService
from veracity.settings import Settings
from veracity.similarity.seen import SeenBefore
from veracity.store.database import Database, prepare_database
from veracity.store.inputs import InputFiles
from veracity.store.predictions import PredictionStore
from veracity.store.revisions import RevisionLog
from veracity.store.windows import AnswerWindows
from veracity.tracing.provider import Tracing

logger = logging.getLogger("veracity.app")

DESCRIPTION = """
Tells whether an image or video frame is **real or manipulated**.

Send an image as multipart field `file` to `POST /infer` with your key in `X-API-Key`.
The answer's `verdict` is `real`, `fake` or `inconclusive`, with `reasons` saying why;
`fake_prob` is a calibrated probability. Add `?robustness_check=true` to re-score the image
after a JPEG re-encode and a halving and learn whether the verdict is stable.
Every error has the same shape: `{"error": {"code", "message", "request_id"}}`.
"""

# In the order they were always declared (the OpenAPI document lists them so).
ROUTERS = (
    infer,
    video,
    batch,
    receipts,
    health,
    predictions,
    models,
    drift,
    v2,
    jobs,
    webhooks,
    keys,
)


@dataclass(frozen=True)
class Parts:
    """What the app owns and starts, and stops in the reverse order."""

    service: ModelService
    database: Database | None
    seen: SeenBefore | None
    inputs: InputFiles | None
    runner: JobRunner | None
    credentials: CredentialReader
    drift: DriftMonitor | None


async def _sweep_inputs(inputs: InputFiles, every_s: float = 3600) -> None:
    """Remove kept inputs past their retention, hourly (and once at start-up)."""
    while True:
        try:
            removed = await asyncio.to_thread(inputs.sweep)
        except OSError as e:
            logger.error("kept inputs not swept", extra={"error": str(e)[:200]})
        else:
            if removed:
                logger.info("kept inputs past retention removed", extra={"files": removed})
        await asyncio.sleep(every_s)


def _log_auth(settings: Settings) -> None:
    if settings.auth_disabled:
        logger.warning(
            "API-key authentication is DISABLED (VERACITY_AUTH_DISABLED=true); "
            "anyone who can reach this port can use the model. Local development only."
        )
    else:
        logger.info(
            "API keys configured",
            extra={"key_ids": [key_id(k) for k in settings.effective_api_keys]},
        )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    parts: Parts = app.state.parts
    tracing: Tracing = app.state.tracing
    tracing.start()
    _log_auth(settings)
    if parts.database is not None:
        await asyncio.to_thread(
            prepare_database, parts.database.engine, migrate=settings.store_options.migrate
        )
    await parts.service.start()
    if parts.seen is not None:
        parts.seen.start()
    if parts.runner is not None:
        parts.runner.start()
    if parts.drift is not None:
        parts.drift.start()
    sweeper = None if parts.inputs is None else asyncio.create_task(_sweep_inputs(parts.inputs))
    try:
        yield
    finally:
        if sweeper is not None:
            sweeper.cancel()
        if parts.drift is not None:
            await parts.drift.stop()
        if parts.runner is not None:
            # First: a running job goes back to the queue instead of being cut off.
            await parts.runner.stop()
        await parts.service.stop(settings.shutdown_drain_s)
        if parts.seen is not None:
            await parts.seen.stop()
        await asyncio.to_thread(parts.credentials.close)
        if parts.database is not None:
            await asyncio.to_thread(parts.database.close)
        # Last: the spans of everything stopped above are sent too (within a bound).
        await tracing.stop()


def _job_runner(
    settings: Settings,
    database: Database | None,
    execute: Execute,
    metrics: ServiceMetrics,
    tracing: Tracing,
) -> JobRunner | None:
    if database is None:
        return None
    queue = JobQueue(
        database,
        lease_s=settings.job_lease_s,
        max_attempts=settings.job_max_attempts,
        max_queued_bytes=int(settings.job_queue_max_mb * 2**20),
    )
    webhooks = (
        None
        if settings.webhook_secret is None
        else WebhookSender(
            settings.webhook_secret.get_secret_value(),
            timeout_s=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
        )
    )
    runner_settings = RunnerSettings(
        concurrency=settings.job_concurrency,
        webhook_attempts=settings.webhook_attempts,
        webhook_backoff_s=settings.webhook_backoff_s,
    )
    return JobRunner(
        queue, execute, runner_settings, webhooks=webhooks, metrics=metrics, tracer=tracing.tracer
    )


def _build_parts(app: FastAPI, settings: Settings, service: ModelService) -> Parts:
    """Build what the app owns (nothing connects yet) and publish it on ``app.state``."""
    metrics: ServiceMetrics = app.state.metrics
    tracing: Tracing = app.state.tracing
    signer = (
        None
        if settings.receipt_signing_key is None
        else ReceiptSigner(settings.receipt_signing_key, settings.receipt_verify_keys)
    )
    # Built here (no connection yet); the schema is checked or migrated at start-up.
    database = (
        Database.open(settings.store_options, metrics, tracing.tracer)
        if settings.store_enabled
        else None
    )
    store = None if database is None else PredictionStore(database)
    if database is not None:
        # Admin changes to the models reach every replica on the same database.
        service.share_lifecycle(RevisionLog(database))
    seen = (
        SeenBefore(store, max_distance=settings.seen_before_max_distance, metrics=metrics)
        if store is not None and settings.seen_before_enabled
        else None
    )
    inputs = (
        InputFiles(settings.inputs_dir, retention_s=settings.input_retention_days * 86_400)
        if store is not None and settings.store_inputs
        else None
    )
    recorder = Recorder(
        store, cache=settings.cache_enabled, seen=seen, inputs=inputs, tracer=tracing.tracer
    )
    # Its worker processes start on the first upload that carries credentials.
    credentials = CredentialReader(settings.provenance_options, metrics)
    executor = JobExecutor(
        service,
        recorder,
        signer,
        video_limits=settings.job_video_limits,
        video_rule=settings.video_rule,
        timeout_s=settings.job_timeout_s,
        credentials=credentials,
    )
    runner = _job_runner(settings, database, executor, metrics, tracing)
    drift = (
        DriftMonitor(service.repository, AnswerWindows(database), settings.drift_options, metrics)
        if database is not None and settings.drift_enabled
        else None
    )
    state = app.state
    state.model_service, state.store, state.recorder = service, store, recorder
    state.job_runner, state.signer, state.credentials = runner, signer, credentials
    state.drift = drift
    return Parts(service, database, seen, inputs, runner, credentials, drift)


def _add_middleware(app: FastAPI, settings: Settings, metrics: ServiceMetrics) -> None:
    # Starlette runs the last-added middleware first: request IDs wrap everything, so even
    # a 413 from the length guard carries one and is logged.
    app.add_middleware(
        BodyLimitMiddleware,
        limits=app.state.body_limits,
        on_reject=lambda: metrics.rejected.labels("payload_too_large").inc(),
    )
    app.add_middleware(BodyBudgetMiddleware)
    app.add_middleware(RequestIdMiddleware)
    # Outermost, so even the catch-all 500 and the length guard's 413 carry the headers.
    app.add_middleware(SecurityHeadersMiddleware)


def _instrument(app: FastAPI, tracing: Tracing) -> None:
    """A server span per HTTP request, continuing the caller's ``traceparent``."""
    if tracing.provider is None:
        return  # off: no middleware at all, not one that records nothing
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracing.provider,
        # The HTTP metrics are Prometheus's (/metrics); none are made twice.
        meter_provider=NoOpMeterProvider(),
        # Probes and scrapes every few seconds would drown the traces that matter.
        excluded_urls="/health,/ready,/metrics",
        # A span per ASGI message (each chunk of an upload) costs more than it tells.
        exclude_spans=["receive", "send"],
    )
    # Outside the instrumentation's middleware (which it puts outermost), so that the server
    # span of a request never inherits the one before it on the same connection.
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: FreshTraceContext(build_stack())  # type: ignore[method-assign]


def create_app(
    settings: Settings,
    *,
    model_service: ModelService | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        settings: The validated configuration; nothing else is read from the environment.
        model_service: A service to use instead of one built from ``settings`` (tests).
        tracing: The app's traces (the entry point's ``Tracing.from_environment()``, or a
            test's in-memory provider); None: off. The app starts and stops its export.
    """
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    tracing = tracing or Tracing()
    service = model_service or ModelService(
        ModelRepository.configured(settings.model_repository, settings.checkpoint),
        settings.service_options,
        metrics=metrics,
        tracer=tracing.tracer,
    )
    app = FastAPI(
        title="veracity",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from local assets
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    state = app.state
    state.settings, state.metrics, state.tracing = settings, metrics, tracing
    state.auth = ApiKeyAuth(
        settings.effective_api_keys,
        admin_keys=settings.admin_keys,
        enabled=not settings.auth_disabled,
    )
    state.limiter = KeyLimiter(settings.rate_limit, settings.daily_quota)
    state.body_limits = body_limits(settings)
    state.route_options = RouteOptions(
        video_frames=settings.video_frames,
        video_rule=settings.video_rule,
        job_video_limits=settings.job_video_limits,
        webhooks=settings.webhook_secret is not None,
    )
    state.parts = _build_parts(app, settings, service)
    if settings.docs_enabled:
        install_docs(app, openapi_url="/openapi.json")
    if settings.console_enabled:
        install_console(app)
    install_error_handlers(app, on_rejection=lambda code: metrics.rejected.labels(code).inc())
    for module in ROUTERS:
        app.include_router(module.router)
    Instrumentator(
        registry=registry,
        # Label by route template, never the raw path, so random URLs cannot create series.
        should_group_untemplated=True,
        excluded_handlers=["/metrics"],
    ).instrument(app).expose(app, endpoint="/metrics", include_in_schema=False)
    _add_middleware(app, settings, metrics)
    _instrument(app, tracing)
    return app
