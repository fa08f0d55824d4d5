"""The app factory: one FastAPI app per Settings, owning its model service and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator

from veracity import __version__
from veracity.api.auth import ApiKeyAuth, key_id
from veracity.api.docs import install_docs
from veracity.api.errors import install_error_handlers
from veracity.api.jobs import JobLimits, build_jobs_router, job_executor
from veracity.api.lifecycle import build_lifecycle_router
from veracity.api.middleware import (
    BodyBudgetMiddleware,
    ContentLengthLimitMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from veracity.api.predictions import build_predictions_router
from veracity.api.ratelimit import KeyLimiter
from veracity.api.routes import (
    AUTH_ERRORS,
    MODEL_ERRORS,
    MULTIPART_OVERHEAD_BYTES,
    STORE_ERRORS,
    VIDEO_ERRORS,
    RouteLimits,
    build_router,
)
from veracity.api.v2 import V2Limits, build_v2_router
from veracity.api.webhooks import build_webhooks_router
from veracity.jobs.queue import JobQueue
from veracity.jobs.runner import JobRunner, RunnerSettings
from veracity.jobs.webhooks import WebhookSender
from veracity.metrics import ServiceMetrics
from veracity.receipts import ReceiptSigner
from veracity.repository.layout import ModelRepository
from veracity.serving.recording import Recorder
from veracity.serving.service import ModelService
from veracity.settings import Settings
from veracity.similarity.seen import SeenBefore
from veracity.store.database import open_store, prepare_database
from veracity.store.inputs import InputFiles

logger = logging.getLogger("veracity.app")

DESCRIPTION = """
Tells whether an image or video frame is **real or manipulated**.

Send an image as multipart field `file` to `POST /infer` with your key in `X-API-Key`.
The answer's `verdict` is `real`, `fake` or `inconclusive`, with `reasons` saying why;
`fake_prob` is a calibrated probability. Add `?robustness_check=true` to re-score the image
after a JPEG re-encode and a halving and learn whether the verdict is stable.
Every error has the same shape: `{"error": {"code", "message", "request_id"}}`.
"""


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


def create_app(settings: Settings, *, model_service: ModelService | None = None) -> FastAPI:
    """Build the app.

    Args:
        settings: The validated configuration; nothing else is read from the environment.
        model_service: A service to use instead of one built from ``settings`` (tests).
    """
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    service = model_service or ModelService(
        ModelRepository(settings.model_repository)
        if settings.model_repository is not None
        else ModelRepository(checkpoint=settings.checkpoint),
        settings.service_options,
        metrics=metrics,
    )
    auth = ApiKeyAuth(
        settings.effective_api_keys,
        admin_keys=settings.admin_keys,
        enabled=not settings.auth_disabled,
    )
    signer = (
        None
        if settings.receipt_signing_key is None
        else ReceiptSigner(settings.receipt_signing_key, settings.receipt_verify_keys)
    )
    # Built here (no connection yet); the schema is checked or migrated at start-up.
    store = open_store(settings, metrics) if settings.store_enabled else None
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
    recorder = Recorder(store, cache=settings.cache_enabled, seen=seen, inputs=inputs)
    job_limits = JobLimits(
        video_max_upload_bytes=settings.video_max_upload_bytes,
        video_limits=settings.job_video_limits,
        timeout_s=settings.job_timeout_s,
        video_frames=settings.video_frames,
        video_aggregation=settings.video_aggregation,
        batch_max_files=settings.job_batch_max_files,
        batch_max_upload_bytes=settings.job_batch_max_upload_bytes,
        max_file_bytes=settings.max_upload_bytes,
        body_timeout_s=settings.body_timeout_s,
        webhooks=settings.webhook_secret is not None,
    )
    runner = (
        None
        if store is None
        else JobRunner(
            JobQueue(
                store,
                lease_s=settings.job_lease_s,
                max_attempts=settings.job_max_attempts,
                max_queued_bytes=int(settings.job_queue_max_mb * 2**20),
            ),
            job_executor(service, recorder, signer, job_limits),
            RunnerSettings(
                concurrency=settings.job_concurrency,
                webhook_attempts=settings.webhook_attempts,
                webhook_backoff_s=settings.webhook_backoff_s,
            ),
            webhooks=None
            if settings.webhook_secret is None
            else WebhookSender(
                settings.webhook_secret.get_secret_value(),
                timeout_s=settings.webhook_timeout_s,
                allow_private=settings.webhook_allow_private,
            ),
            metrics=metrics,
        )
    )
    limiter = KeyLimiter(settings.rate_limit, settings.daily_quota)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
        if store is not None:
            await asyncio.to_thread(
                prepare_database, store.engine, migrate=settings.database_migrate
            )
        await service.start()
        if seen is not None:
            seen.start()
        if runner is not None:
            runner.start()
        sweeper = None if inputs is None else asyncio.create_task(_sweep_inputs(inputs))
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
            if runner is not None:
                # First: a running job goes back to the queue instead of being cut off.
                await runner.stop()
            await service.stop(settings.shutdown_drain_s)
            if seen is not None:
                await seen.stop()
            if store is not None:
                await asyncio.to_thread(store.close)

    app = FastAPI(
        title="veracity",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from local assets
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.settings = settings
    app.state.model_service = service
    app.state.auth = auth
    app.state.limiter = limiter
    app.state.metrics = metrics
    app.state.store = store
    app.state.recorder = recorder
    app.state.job_runner = runner
    app.state.signer = signer
    if settings.docs_enabled:
        install_docs(app, openapi_url="/openapi.json")

    install_error_handlers(app, on_rejection=lambda code: metrics.rejected.labels(code).inc())
    app.include_router(
        build_router(
            RouteLimits(
                max_upload_bytes=settings.max_upload_bytes,
                body_timeout_s=settings.body_timeout_s,
                video_max_upload_bytes=settings.video_max_upload_bytes,
                video_frames=settings.video_frames,
                video_aggregation=settings.video_aggregation,
                batch_max_files=settings.batch_max_files,
                batch_max_upload_bytes=settings.batch_max_upload_bytes,
            )
        )
    )
    app.include_router(build_predictions_router(STORE_ERRORS))
    app.include_router(build_lifecycle_router(MODEL_ERRORS))
    # A V2 body may carry a batch's images as base64 (4/3 the bytes) plus its JSON.
    v2_max_body = settings.batch_max_upload_bytes * 4 // 3 + 2**20
    app.include_router(
        build_v2_router(
            V2Limits(
                max_items=settings.batch_max_files,
                max_item_bytes=settings.max_upload_bytes,
                max_body_bytes=v2_max_body,
                body_timeout_s=settings.body_timeout_s,
            )
        )
    )
    app.include_router(build_jobs_router(job_limits, VIDEO_ERRORS | {404: STORE_ERRORS[404]}))
    app.include_router(build_webhooks_router(settings.webhook_secret, AUTH_ERRORS))
    Instrumentator(
        registry=registry,
        # Label by route template, never the raw path, so random URLs cannot create series.
        should_group_untemplated=True,
        excluded_handlers=["/metrics"],
    ).instrument(app).expose(app, endpoint="/metrics", include_in_schema=False)
    # Starlette runs the last-added middleware first: request IDs wrap everything, so even
    # a 413 from the length guard carries one and is logged.
    app.add_middleware(
        ContentLengthLimitMiddleware,
        max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        message=f"request body exceeds the {settings.max_upload_mb:g} MB upload limit; "
        "send a smaller image",
        on_reject=lambda: metrics.rejected.labels("payload_too_large").inc(),
        per_path={
            "/infer/video": (
                settings.video_max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
                f"request body exceeds the {settings.video_max_upload_mb:g} MB video upload "
                "limit; send a shorter or smaller video",
            ),
            "/infer/batch": (
                settings.batch_max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
                f"request body exceeds the {settings.batch_max_upload_mb:g} MB batch upload "
                "limit; send fewer or smaller images per request",
            ),
            "/jobs/video": (
                settings.video_max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
                f"request body exceeds the {settings.video_max_upload_mb:g} MB video upload "
                "limit; send a smaller video",
            ),
            "/v2/models/": (
                v2_max_body,
                f"request body exceeds the {v2_max_body / 2**20:g} MB limit of a V2 "
                "inference request; send fewer or smaller images per request",
            ),
            "/jobs/batch": (
                settings.job_batch_max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
                f"request body exceeds the {settings.job_batch_max_upload_mb:g} MB batch job "
                "upload limit; split the images over several jobs",
            ),
        },
    )
    app.add_middleware(BodyBudgetMiddleware)
    app.add_middleware(RequestIdMiddleware)
    # Outermost, so even the catch-all 500 and the length guard's 413 carry the headers.
    app.add_middleware(SecurityHeadersMiddleware)
    return app
