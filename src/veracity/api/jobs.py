"""Asynchronous jobs over HTTP: POST a long video or a large batch, get 202 and the job's
URL, poll it (or be called back). And what running a job means: the same judging as the
synchronous routes, with a job's limits."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field

from veracity.api.deps import CallerDep, ModelChoiceDep, ModelServiceDep
from veracity.api.routes import (
    INFER_ERRORS,
    MULTIPART_OVERHEAD_BYTES,
    error_response,
    hold_body,
    read_upload,
    read_uploads,
    upload_schema,
)
from veracity.callers import Caller
from veracity.errors import BadRequestError, NotFoundError
from veracity.jobs.queue import Job, JobInput, JobQueue
from veracity.jobs.runner import Execute, JobOutcome, JobRunner
from veracity.jobs.webhooks import check_webhook_url
from veracity.receipts import ReceiptSigner
from veracity.serving.judging import batch_answer, finished, judge_batch, judge_video
from veracity.serving.recording import Recorder
from veracity.serving.service import ModelService
from veracity.video.aggregate import AggregationMethod, AggregationRule
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


@dataclass(frozen=True)
class JobLimits:
    """What the job routes and the runner need from Settings."""

    video_max_upload_bytes: int
    video_limits: VideoLimits  # a job's: longer duration and decoding budget
    timeout_s: float
    video_frames: int
    video_aggregation: AggregationMethod
    batch_max_files: int
    batch_max_upload_bytes: int
    max_file_bytes: int  # each image of a batch
    body_timeout_s: float
    webhooks: bool  # a webhook secret is configured


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
    kind: Literal["video", "batch"]
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


def job_executor(
    service: ModelService, recorder: Recorder, signer: ReceiptSigner | None, limits: JobLimits
) -> Execute:
    """What running a job means, for the runner."""

    async def execute(job: Job, inputs: list[JobInput]) -> JobOutcome:
        caller = Caller(key_id=job.key_id, admin=False)
        params = job.params
        if job.kind == "video":
            answer, row = await judge_video(
                service,
                recorder,
                caller,
                inputs[0].data,
                request_id=job.request_id,
                prediction_id=job.id,
                plan=SamplingPlan(count=params["count"], every_s=params["every_s"]),
                rule=AggregationRule(method=params["aggregation"]),
                limits=limits.video_limits,
                timeout_s=limits.timeout_s,
                timeout_setting="VERACITY_JOB_TIMEOUT_S",
                # Jobs queued before models could be chosen have no such parameters.
                model=params.get("model"),
                version=params.get("model_version"),
            )
            # Recorded with the job's completion, in the same transaction.
            await recorder.keep_inputs([row], [inputs[0].data])
            return JobOutcome(finished(answer, row, True, signer).model_dump(mode="json"), [row])
        answers, rows = await judge_batch(
            service,
            recorder,
            caller,
            [(item.filename, item.data) for item in inputs],
            request_id=job.request_id,
            id_prefix=job.id,
            robustness_check=params["robustness_check"],
            model=params.get("model"),
            version=params.get("model_version"),
        )
        await recorder.keep_inputs(rows, [item.data for item in inputs])
        batch = batch_answer(job.request_id, answers, rows, True, signer)
        return JobOutcome(batch.model_dump(mode="json"), rows)

    return execute


_JOB_ENDED = error_response(
    "The job already ended (done or failed); its outcome stands.",
    "job_ended",
    "the job already ended (done); there is nothing to cancel",
)


def build_jobs_router(limits: JobLimits, errors: dict[int | str, dict[str, Any]]) -> APIRouter:
    router = APIRouter(prefix="/jobs", tags=["jobs"])
    # A job's 404 is an unknown model (a job ID is only read by GET).
    upload_errors = {k: v for k, v in errors.items() if k != 404} | {404: INFER_ERRORS[404]}

    def queue_of(request: Request) -> tuple[JobQueue, JobRunner]:
        runner: JobRunner | None = request.app.state.job_runner
        if runner is None:
            raise NotFoundError(
                "this deployment runs no jobs: they need the results store "
                "(VERACITY_STORE_ENABLED=true)"
            )
        return runner.queue, runner

    def webhook(url: str | None) -> str | None:
        if url is None:
            return None
        if not limits.webhooks:
            raise BadRequestError(
                "this deployment sends no webhooks (no VERACITY_WEBHOOK_SECRET to sign "
                "them); leave webhook_url out and poll the job's URL"
            )
        return check_webhook_url(url)

    async def enqueue(
        request: Request,
        caller: Caller,
        kind: Literal["video", "batch"],
        params: dict[str, Any],
        inputs: list[JobInput],
        webhook_url: str | None,
        response: Response,
        idempotency_key: str | None,
    ) -> JobResponse:
        queue, runner = queue_of(request)
        await queue.check_room(sum(len(item.data) for item in inputs))
        job = await queue.enqueue(
            job_id=uuid.uuid4().hex,
            request_id=request.state.request_id,
            caller=caller,
            kind=kind,
            params=params,
            inputs=inputs,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
        )
        runner.wake()
        return accepted(job, response)

    def accepted(job: Job, response: Response) -> JobResponse:
        response.status_code = 202
        response.headers["Location"] = f"/jobs/{job.id}"
        return JobResponse.build(job)

    async def repeat_of(
        request: Request,
        caller: Caller,
        kind: Literal["video", "batch"],
        idempotency_key: str | None,
        response: Response,
    ) -> JobResponse | None:
        """The answer to a request this key already made with this Idempotency-Key,
        before its body is received (and held, and checked) a second time."""
        queue, _ = queue_of(request)
        job = await queue.find_repeat(caller, idempotency_key, kind)
        return None if job is None else accepted(job, response)

    @router.post(
        "/video",
        response_model=JobResponse,
        status_code=202,
        summary="Queue a video (up to VERACITY_JOB_VIDEO_MAX_DURATION_S) for analysis",
        description="Answers 202 with the job's URL at once; the result, when done, is what "
        "POST /infer/video answers. Jobs survive restarts and run on one replica each.",
        responses=upload_errors,
        max_body_size=limits.video_max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        openapi_extra=upload_schema("file", "The video: MP4, MOV, WebM or MKV.", many=False),
    )
    async def create_video_job(
        request: Request,
        response: Response,
        service: ModelServiceDep,
        caller: CallerDep,
        choice: ModelChoiceDep,
        frames: Annotated[int | None, Query(ge=1, le=1024)] = None,
        every_s: Annotated[float | None, Query(gt=0, le=3600)] = None,
        aggregation: Annotated[AggregationMethod | None, Query()] = None,
        webhook_url: WebhookUrl = None,
        idempotency_key: IdempotencyKey = None,
    ) -> JobResponse:
        queue_of(request)
        service.registry.check_runnable(choice.model, choice.version)
        hook = webhook(webhook_url)
        if repeat := await repeat_of(request, caller, "video", idempotency_key, response):
            return repeat
        hold_body(request, service)
        data = await read_upload(
            request,
            max_image_bytes=limits.video_max_upload_bytes,
            timeout_s=limits.body_timeout_s,
            noun="video",
        )
        plan = SamplingPlan(count=frames or limits.video_frames, every_s=every_s)
        # Refuse now what the job would refuse later: not a video, a codec or container
        # outside the allowlist, longer than a job may be, too many frames asked for.
        await asyncio.to_thread(_check_video, data, plan, limits.video_limits)
        params = {
            "count": plan.count,
            "every_s": plan.every_s,
            "aggregation": aggregation or limits.video_aggregation,
            "model": choice.model,
            "model_version": choice.version,
        }
        inputs = [JobInput(None, data)]
        return await enqueue(
            request, caller, "video", params, inputs, hook, response, idempotency_key
        )

    @router.post(
        "/batch",
        response_model=JobResponse,
        status_code=202,
        summary="Queue many images (up to VERACITY_JOB_BATCH_MAX_FILES) for analysis",
        description="Answers 202 with the job's URL at once; the result, when done, is what "
        "POST /infer/batch answers.",
        responses=upload_errors,
        max_body_size=limits.batch_max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        openapi_extra=upload_schema("files", "The images (repeat the field).", many=True),
    )
    async def create_batch_job(
        request: Request,
        response: Response,
        service: ModelServiceDep,
        caller: CallerDep,
        choice: ModelChoiceDep,
        robustness_check: Annotated[bool | None, Query()] = None,
        webhook_url: WebhookUrl = None,
        idempotency_key: IdempotencyKey = None,
    ) -> JobResponse:
        queue_of(request)
        service.registry.check_runnable(choice.model, choice.version)
        hook = webhook(webhook_url)
        if repeat := await repeat_of(request, caller, "batch", idempotency_key, response):
            return repeat
        hold_body(request, service)
        files = await read_uploads(
            request,
            field="files",
            max_files=limits.batch_max_files,
            max_file_bytes=limits.max_file_bytes,
            timeout_s=limits.body_timeout_s,
        )
        inputs = [JobInput(name, data) for name, data in files]
        params = {
            "robustness_check": robustness_check,
            "model": choice.model,
            "model_version": choice.version,
        }
        return await enqueue(
            request, caller, "batch", params, inputs, hook, response, idempotency_key
        )

    @router.get(
        "/{job_id}",
        response_model=JobResponse,
        summary="A job's status, and its result or error once it ends",
        responses={k: v for k, v in errors.items() if k in (401, 404, 422, 429, 503)},
    )
    async def get_job(request: Request, job_id: JobId, caller: CallerDep) -> JobResponse:
        queue, _ = queue_of(request)
        return JobResponse.build(await queue.get(job_id, caller))

    cancel_errors: dict[int | str, dict[str, Any]] = {
        k: v for k, v in errors.items() if k in (401, 404, 422, 429, 503)
    }
    cancel_errors[409] = _JOB_ENDED

    @router.post(
        "/{job_id}/cancel",
        response_model=JobResponse,
        summary="Cancel a queued or running job",
        description="The job ends as `cancelled` at once (its webhook, if any, says so); a "
        "running one stops on this replica at once and on another within a third of "
        "VERACITY_JOB_LEASE_S. Cancelling a cancelled job answers it again; a job that "
        "already ended (done or failed) answers 409 job_ended and keeps its outcome.",
        responses=cancel_errors,
    )
    async def cancel_job(request: Request, job_id: JobId, caller: CallerDep) -> JobResponse:
        queue, runner = queue_of(request)
        job = await queue.cancel(job_id, caller)
        runner.interrupt(job.id)
        return JobResponse.build(job)

    return router


def _check_video(data: bytes, plan: SamplingPlan, limits: VideoLimits) -> None:
    from veracity.video.sampling import VideoReader  # imports FFmpeg

    with VideoReader(data, limits) as reader:
        plan.targets(0.0, reader.info.duration_s, limits)
