"""Asynchronous jobs over HTTP: POST a long video or a large batch, get 202 and the job's
URL, poll it (or be called back). What running one means is ``serving.jobs``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, Field

from veracity.api.deps import CallerDep, JobRunnerDep, ModelChoiceDep, RouteOptionsDep
from veracity.api.openapi import JOB_ENDED, NO_SUCH_PREDICTION, VIDEO_ERRORS, only, upload_schema
from veracity.api.uploads import Upload, UploadDep
from veracity.callers import Caller
from veracity.errors import BadRequestError, NotFoundError
from veracity.jobs.params import BatchJobParams, JobParams, VideoJobParams, kind_of
from veracity.jobs.records import Job, JobInput, JobKind
from veracity.jobs.runner import JobRunner
from veracity.jobs.webhooks import check_webhook_url
from veracity.video.aggregate import AggregationMethod
from veracity.video.plan import SamplingPlan, VideoLimits

WebhookUrl = Annotated[
    str | None,
    Query(
        max_length=2048,
        description="Called with the job's outcome when it ends: a POST of JSON signed in "
        "the Veracity-Signature header (HMAC-SHA256 under your key's webhook secret, from "
        "GET /webhooks/secret; see DEPLOYMENT.md). An absolute http(s) URL to a public "
        "address. Needs VERACITY_WEBHOOK_SECRET.",
    ),
]
JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID): sending the same request again with the "
        "same key answers the job the first one created instead of creating another, so a "
        "request whose answer was lost (or a 503 store_outcome_unknown) is safe to repeat.",
    ),
]


class JobError(BaseModel):
    code: str
    message: str


class WebhookState(BaseModel):
    url: str
    status: Literal["pending", "delivered", "failed"] | None = Field(
        description="null until the job ends; then pending until delivered or given up."
    )
    attempts: int
    last_error: str | None


class JobResponse(BaseModel):
    job_id: str
    url: str = Field(description="Poll this for the status and the result.")
    kind: JobKind
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int = Field(description="Times a worker started it (a restart starts it again).")
    result: dict[str, Any] | None = Field(
        description="When done: the answer POST /infer/video or /infer/batch would give "
        "(its verdicts stored under prediction IDs <job_id> or <job_id>-<index>)."
    )
    error: JobError | None = Field(description="When failed: why, in the error shape.")
    webhook: WebhookState | None

    @classmethod
    def build(cls, job: Job) -> JobResponse:
        return cls(
            job_id=job.id,
            url=f"/jobs/{job.id}",
            kind=job.kind,
            status=job.status,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            attempts=job.attempts,
            result=job.result,
            error=JobError(**job.error) if job.error else None,
            webhook=None
            if job.webhook_url is None
            else WebhookState(
                url=job.webhook_url,
                status=job.webhook_status,  # type: ignore[arg-type]
                attempts=job.webhook_attempts,
                last_error=job.webhook_error,
            ),
        )


router = APIRouter(prefix="/jobs", tags=["jobs"])
# A job's 404 is an unknown model (a job ID is only read by GET).
UPLOAD_ERRORS = VIDEO_ERRORS
READ_ERRORS = only(VIDEO_ERRORS | NO_SUCH_PREDICTION, 401, 404, 422, 429, 503)


@router.post(
    "/video",
    response_model=JobResponse,
    status_code=202,
    summary="Queue a video (up to VERACITY_JOB_VIDEO_MAX_DURATION_S) for analysis",
    description="Answers 202 with the job's URL at once; the result, when done, is what "
    "POST /infer/video answers. Jobs survive restarts and run on one replica each.",
    responses=UPLOAD_ERRORS,
    openapi_extra=upload_schema("file", "The video: MP4, MOV, WebM or MKV.", many=False),
)
async def create_video_job(
    response: Response,
    upload: UploadDep,
    runner: JobRunnerDep,
    options: RouteOptionsDep,
    choice: ModelChoiceDep,
    frames: Annotated[int | None, Query(ge=1, le=1024)] = None,
    every_s: Annotated[float | None, Query(gt=0, le=3600)] = None,
    aggregation: Annotated[AggregationMethod | None, Query()] = None,
    webhook_url: WebhookUrl = None,
    idempotency_key: IdempotencyKey = None,
) -> JobResponse:
    jobs = _jobs(runner)
    upload.service.check_runnable(choice.model, choice.version)
    hook = _webhook(webhook_url, options.webhooks)
    if repeat := await _repeat_of(jobs, upload.caller, "video", idempotency_key, response):
        return repeat
    data = await upload.file()
    plan = SamplingPlan(count=frames or options.video_frames, every_s=every_s)
    # Refuse now what the job would refuse later: not a video, a codec or container
    # outside the allowlist, longer than a job may be, too many frames asked for.
    await asyncio.to_thread(_check_video, data, plan, options.job_video_limits)
    params = VideoJobParams(
        count=plan.count,
        every_s=plan.every_s,
        aggregation=aggregation or options.video_rule.method,
        model=choice.model,
        model_version=choice.version,
    )
    inputs = [JobInput(None, data)]
    return await _enqueue(jobs, upload, params, inputs, hook, response, idempotency_key)


@router.post(
    "/batch",
    response_model=JobResponse,
    status_code=202,
    summary="Queue many images (up to VERACITY_JOB_BATCH_MAX_FILES) for analysis",
    description="Answers 202 with the job's URL at once; the result, when done, is what "
    "POST /infer/batch answers.",
    responses=UPLOAD_ERRORS,
    openapi_extra=upload_schema("files", "The images (repeat the field).", many=True),
)
async def create_batch_job(
    response: Response,
    upload: UploadDep,
    runner: JobRunnerDep,
    options: RouteOptionsDep,
    choice: ModelChoiceDep,
    robustness_check: Annotated[bool | None, Query()] = None,
    webhook_url: WebhookUrl = None,
    idempotency_key: IdempotencyKey = None,
) -> JobResponse:
    jobs = _jobs(runner)
    upload.service.check_runnable(choice.model, choice.version)
    hook = _webhook(webhook_url, options.webhooks)
    if repeat := await _repeat_of(jobs, upload.caller, "batch", idempotency_key, response):
        return repeat
    files = await upload.files()
    inputs = [JobInput(name, data) for name, data in files]
    params = BatchJobParams(
        robustness_check=robustness_check, model=choice.model, model_version=choice.version
    )
    return await _enqueue(jobs, upload, params, inputs, hook, response, idempotency_key)


@router.get(
    "/{job_id}",
    response_model=JobResponse,
    summary="A job's status, and its result or error once it ends",
    responses=READ_ERRORS,
)
async def get_job(job_id: JobId, caller: CallerDep, runner: JobRunnerDep) -> JobResponse:
    return JobResponse.build(await _jobs(runner).queue.get(job_id, caller))


@router.post(
    "/{job_id}/cancel",
    response_model=JobResponse,
    summary="Cancel a queued or running job",
    description="The job ends as `cancelled` at once (its webhook, if any, says so); a "
    "running one stops on this replica at once and on another within a third of "
    "VERACITY_JOB_LEASE_S. Cancelling a cancelled job answers it again; a job that "
    "already ended (done or failed) answers 409 job_ended and keeps its outcome.",
    responses=READ_ERRORS | JOB_ENDED,
)
async def cancel_job(job_id: JobId, caller: CallerDep, runner: JobRunnerDep) -> JobResponse:
    jobs = _jobs(runner)
    job = await jobs.queue.cancel(job_id, caller)
    jobs.interrupt(job.id)
    return JobResponse.build(job)


def _jobs(runner: JobRunner | None) -> JobRunner:
    # Raised here rather than by the dependency, so an invalid parameter is answered first.
    if runner is None:
        raise NotFoundError(
            "this deployment runs no jobs: they need the results store "
            "(VERACITY_STORE_ENABLED=true)"
        )
    return runner


def _webhook(url: str | None, enabled: bool) -> str | None:
    if url is None:
        return None
    if not enabled:
        raise BadRequestError(
            "this deployment sends no webhooks (no VERACITY_WEBHOOK_SECRET to sign "
            "them); leave webhook_url out and poll the job's URL"
        )
    return check_webhook_url(url)


async def _repeat_of(
    jobs: JobRunner,
    caller: Caller,
    kind: JobKind,
    idempotency_key: str | None,
    response: Response,
) -> JobResponse | None:
    """The answer to a request this key already made with this Idempotency-Key, before its
    body is received (and held, and checked) a second time."""
    job = await jobs.queue.find_repeat(caller, idempotency_key, kind)
    return None if job is None else _accepted(job, response)


async def _enqueue(
    jobs: JobRunner,
    upload: Upload,
    params: JobParams,
    inputs: list[JobInput],
    webhook_url: str | None,
    response: Response,
    idempotency_key: str | None,
) -> JobResponse:
    await jobs.queue.check_room(sum(len(item.data) for item in inputs))
    job = await jobs.queue.enqueue(
        job_id=uuid.uuid4().hex,
        request_id=upload.request.state.request_id,
        caller=upload.caller,
        kind=kind_of(params),
        params=params.to_json(),
        inputs=inputs,
        webhook_url=webhook_url,
        idempotency_key=idempotency_key,
    )
    jobs.wake()
    return _accepted(job, response)


def _accepted(job: Job, response: Response) -> JobResponse:
    response.status_code = 202
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobResponse.build(job)


def _check_video(data: bytes, plan: SamplingPlan, limits: VideoLimits) -> None:
    from veracity.video.sampling import VideoReader  # imports FFmpeg

    with VideoReader(data, limits) as reader:
        plan.targets(0.0, reader.info.duration_s, limits)
