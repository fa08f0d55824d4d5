"""Dependency aliases, so route signatures read like sentences.

Every dependency is ``async def``, though none awaits: FastAPI runs a plain ``def``
dependency in a worker thread, and the hand-off there and back cost more than the
dependency itself (several per request on the hot path). So they must stay free of blocking
I/O; work that blocks goes to a thread where it is done, not here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from veracity.api.auth import ApiKeyAuth
from veracity.api.ratelimit import ANONYMOUS, KeyLimiter
from veracity.callers import Caller
from veracity.errors import ForbiddenError, NotFoundError, RateLimitedError
from veracity.jobs.runner import JobRunner
from veracity.metrics import ServiceMetrics
from veracity.provenance.reader import CredentialReader
from veracity.receipts import ReceiptSigner
from veracity.repository.layout import NAME_PATTERN
from veracity.serving.drift import DriftMonitor
from veracity.serving.recording import Recorder
from veracity.serving.service import ModelService
from veracity.settings import Settings
from veracity.store.predictions import PredictionStore
from veracity.video.aggregate import AggregationRule
from veracity.video.plan import VideoLimits

# auto_error=False: a missing key is answered by ApiKeyAuth with the project's error shape.
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="One of the keys configured in VERACITY_API_KEYS.",
)


async def get_model_service(request: Request) -> ModelService:
    service: ModelService = request.app.state.model_service
    return service


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def require_api_key(
    request: Request,
    # Declared for the OpenAPI security scheme; the header is read (and checked for
    # duplicates and misplaced keys) by ApiKeyAuth itself.
    _: Annotated[str | None, Security(api_key_header)],
) -> str | None:
    """Authenticate, then count the request against the key's rate limit and quota."""
    auth: ApiKeyAuth = request.app.state.auth
    caller = auth.authenticate_request(request.headers, request.query_params)
    identity = caller.key_id
    request.scope.setdefault("state", {})["api_key_id"] = identity
    request.state.caller = caller
    limiter: KeyLimiter = request.app.state.limiter
    try:
        limiter.hit(identity)
    except RateLimitedError as e:
        metrics: ServiceMetrics = request.app.state.metrics
        metrics.throttled.labels(identity or ANONYMOUS, e.code).inc()
        raise
    return identity


async def get_caller(
    request: Request, _: Annotated[str | None, Depends(require_api_key)]
) -> Caller:
    """The authenticated caller (its key ID and scope), after the key and rate checks."""
    caller: Caller = request.state.caller
    return caller


async def get_recorder(request: Request) -> Recorder:
    recorder: Recorder = request.app.state.recorder
    return recorder


async def get_signer(request: Request) -> ReceiptSigner | None:
    signer: ReceiptSigner | None = request.app.state.signer
    return signer


async def get_credentials(request: Request) -> CredentialReader:
    credentials: CredentialReader = request.app.state.credentials
    return credentials


async def get_store(request: Request) -> PredictionStore:
    """The results store; 404 where the deployment runs without one."""
    store: PredictionStore | None = request.app.state.store
    if store is None:
        raise NotFoundError(
            "this deployment keeps no results store (VERACITY_STORE_ENABLED=false), so "
            "there are no stored predictions to read"
        )
    return store


async def get_drift_monitor(request: Request) -> DriftMonitor:
    """The drift monitor; 404 where the deployment runs without one."""
    monitor: DriftMonitor | None = request.app.state.drift
    if monitor is None:
        raise NotFoundError(
            "drift monitoring is off in this deployment: it needs the results store "
            "(VERACITY_STORE_ENABLED) and VERACITY_DRIFT_ENABLED=true"
        )
    return monitor


@dataclass(frozen=True)
class RouteOptions:
    """What the video and job routes take from Settings (built once by the app)."""

    video_frames: int  # the frames a video request or job samples unless it says
    video_rule: AggregationRule  # how frame verdicts become a video's (method: a default)
    job_video_limits: VideoLimits  # longer duration and decoding budget than a request's
    webhooks: bool  # a webhook secret is configured


async def get_route_options(request: Request) -> RouteOptions:
    options: RouteOptions = request.app.state.route_options
    return options


async def get_job_runner(request: Request) -> JobRunner | None:
    runner: JobRunner | None = request.app.state.job_runner
    return runner


async def get_webhook_secret(request: Request) -> SecretStr | None:
    settings: Settings = request.app.state.settings
    return settings.webhook_secret


@dataclass(frozen=True)
class ModelChoice:
    """The model and version a request asks for (None: the deployment's default route)."""

    model: str | None = None
    version: str | None = None


async def get_model_choice(
    model: Annotated[
        str | None,
        Query(
            pattern=NAME_PATTERN,
            description="The model to answer (GET /models lists them). Default: the "
            "deployment's default model (VERACITY_DEFAULT_MODEL).",
        ),
    ] = None,
    model_version: Annotated[
        str | None,
        Query(
            pattern=NAME_PATTERN,
            description="The version to answer. Default: the model's serving version (or "
            "its canary, for the canary's share of requests).",
        ),
    ] = None,
) -> ModelChoice:
    return ModelChoice(model, model_version)


def require_admin(caller: Caller) -> Caller:
    """Raise ForbiddenError unless ``caller`` has the admin scope."""
    if not caller.admin:
        raise ForbiddenError(
            "this route needs a key with the admin scope (VERACITY_ADMIN_API_KEYS); this "
            "key may use the models but not manage them"
        )
    return caller


async def get_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    return require_admin(caller)


ModelChoiceDep = Annotated[ModelChoice, Depends(get_model_choice)]
AdminDep = Annotated[Caller, Depends(get_admin)]
ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ApiKeyDep = Annotated[str | None, Depends(require_api_key)]
CallerDep = Annotated[Caller, Depends(get_caller)]
StoreDep = Annotated[PredictionStore, Depends(get_store)]
RecorderDep = Annotated[Recorder, Depends(get_recorder)]
SignerDep = Annotated[ReceiptSigner | None, Depends(get_signer)]
CredentialsDep = Annotated[CredentialReader, Depends(get_credentials)]
DriftMonitorDep = Annotated[DriftMonitor, Depends(get_drift_monitor)]
RouteOptionsDep = Annotated[RouteOptions, Depends(get_route_options)]
JobRunnerDep = Annotated[JobRunner | None, Depends(get_job_runner)]
WebhookSecretDep = Annotated[SecretStr | None, Depends(get_webhook_secret)]
