"""The workers of one replica: claim queued jobs, run them through the model service (whose
admission they share with live requests), record the outcome, deliver webhooks.

A job the service has no room for goes back to the queue without counting an attempt, so
live requests keep priority. On shutdown a running job is handed back to the queue; if
the process dies instead, the job's lease runs out and any replica claims it again.

Each attempt at a job is a ``job.run`` span and each webhook delivery a ``webhook.deliver``
span, both children of the span of the request that created the job (its ``traceparent``
is stored with it), so the trace goes on wherever and whenever the job runs; the delivery
sends its own ``traceparent`` to the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import NoOpTracer, Span, SpanKind, Status, StatusCode, Tracer

from veracity.errors import (
    ModelNotLoadedError,
    ServiceUnavailableError,
    StoreUnavailableError,
    VeracityError,
)
from veracity.jobs.queue import JobQueue
from veracity.jobs.records import Job, JobInput
from veracity.jobs.webhooks import Delivery, WebhookSender
from veracity.metrics import ServiceMetrics
from veracity.store.schema import PredictionRow
from veracity.tracing import context_of

logger = logging.getLogger("veracity.jobs")


@dataclass(frozen=True)
class JobOutcome:
    result: dict[str, Any]
    rows: list[PredictionRow]


Execute = Callable[[Job, list[JobInput]], Awaitable[JobOutcome]]


@dataclass(frozen=True)
class RunnerSettings:
    concurrency: int = 1
    poll_s: float = 1.0
    busy_retry_s: float = 2.0
    webhook_attempts: int = 5
    webhook_backoff_s: float = 2.0  # doubled after each failed attempt


class JobRunner:
    def __init__(
        self,
        queue: JobQueue,
        execute: Execute,
        settings: RunnerSettings,
        *,
        webhooks: WebhookSender | None,
        metrics: ServiceMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.queue = queue
        self._execute = execute
        self._settings = settings
        self._webhooks = webhooks
        self._metrics = metrics
        self._tracer = tracer or NoOpTracer()
        self._wake = asyncio.Event()
        self._webhook_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Future[JobOutcome]] = {}  # job ID -> its execution
        # A name per process start: a lease taken by an earlier life of this replica is
        # not mistaken for this one's.
        self.name = f"worker-{uuid.uuid4().hex[:12]}"
        self._workers = [f"{self.name}-{index}" for index in range(settings.concurrency)]

    def start(self) -> None:
        for worker in self._workers:
            self._tasks.append(asyncio.create_task(self._work(worker)))
        self._tasks.append(asyncio.create_task(self._deliver_webhooks()))
        if self._metrics is not None:
            self._tasks.append(asyncio.create_task(self._watch_depth(self._metrics)))

    def wake(self) -> None:
        """A job was just queued here: look now instead of at the next poll."""
        self._wake.set()

    def interrupt(self, job_id: str) -> None:
        """Stop running ``job_id`` here now (it was cancelled) and send its webhook; a job
        running on another replica stops when that replica next renews its lease."""
        work = self._running.get(job_id)
        if work is not None:
            work.cancel()
        self._webhook_wake.set()  # its webhook (cancelled) is due now

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                # A loop that died must not cost the rest of the stop: the jobs held here
                # are still handed back.
                logger.exception("a job runner task had failed")
        self._tasks.clear()
        # Whatever this replica still holds goes back to the queue now rather than when its
        # lease runs out (a cancelled worker may have claimed a job in its last moment).
        with contextlib.suppress(StoreUnavailableError):
            released = await self.queue.release_all(self._workers)
            if released:
                logger.info("jobs handed back at shutdown", extra={"jobs": released})
        if self._webhooks is not None:
            await self._webhooks.close()

    async def _idle(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.poll_s):
                await event.wait()
        event.clear()

    async def _work(self, worker: str) -> None:
        while True:
            try:
                for job_id in await self.queue.exhausted(worker):
                    logger.error("job failed: attempts exhausted", extra={"job_id": job_id})
                    self._count("failed")
                    self._webhook_wake.set()
                claimed = await self.queue.claim(worker)
            except StoreUnavailableError:
                claimed = None
            if claimed is None:
                await self._idle(self._wake)
                continue
            job, inputs = claimed
            await self._run(worker, job, inputs)

    async def _run(self, worker: str, job: Job, inputs: list[JobInput]) -> None:
        # Current while the job runs: the judging's spans (and log lines) are its children.
        with self._tracer.start_as_current_span(
            "job.run",
            context=context_of(job.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                "veracity.job.id": job.id,
                "veracity.job.kind": job.kind,
                "veracity.job.attempt": job.attempts,
                "veracity.request_id": job.request_id,
            },
        ) as span:
            await self._run_traced(worker, job, inputs, span)

    async def _run_traced(self, worker: str, job: Job, inputs: list[JobInput], span: Span) -> None:
        log = {"job_id": job.id, "kind": job.kind, "attempt": job.attempts}
        logger.info("job started", extra=log)
        work = asyncio.ensure_future(self._execute(job, inputs))
        self._running[job.id] = work
        lease = asyncio.create_task(self._keep_lease(worker, job.id, work))
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        rows: list[PredictionRow] = []
        try:
            outcome = await work
            result, rows = outcome.result, outcome.rows
        except ModelNotLoadedError as e:
            # Only an admin's load would let it run: waiting in line would hold the queue.
            error = {"code": "model_not_loaded", "message": e.message}
        except ServiceUnavailableError:
            # Busy (or still loading): live requests come first; the job waits its turn,
            # behind the jobs queued after it.
            lease.cancel()
            span.set_attribute("veracity.job.outcome", "handed_back")
            busy_s = self._settings.busy_retry_s
            await self._hand_back(job.id, worker, wait_s=busy_s)
            await asyncio.sleep(busy_s)
            return
        except asyncio.CancelledError:
            lease.cancel()
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # Stopping: stop() hands the job back; another replica (or this one after
                # a restart) runs it.
                raise
            # Only the job's work was cancelled: it was cancelled by its key, or its claim
            # went to another worker. Either way its outcome is no longer this worker's.
            logger.info("job stopped: cancelled or claimed elsewhere", extra=log)
            return
        except VeracityError as e:
            error = {"code": e.code, "message": e.message}
        except Exception:
            logger.exception("job crashed", extra=log)
            error = {
                "code": "internal_error",
                "message": "the job failed on an unexpected error; quote the job ID",
            }
        finally:
            lease.cancel()
            # Only this worker's entry: after a lapsed lease, another worker of this replica
            # may be running the same job now.
            if self._running.get(job.id) is work:
                del self._running[job.id]
        try:
            finished = await self.queue.finish(
                job.id, worker, result=result, error=error, rows=rows
            )
        except StoreUnavailableError:
            # The lease runs out and the job is run again: nothing is lost.
            logger.error("job outcome not recorded; it will run again", extra=log)
            return
        if not finished:
            logger.warning("job claim lost; another worker records it", extra=log)
            return
        status = "done" if error is None else "failed"
        span.set_attribute("veracity.job.outcome", status)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error["code"]))
        self._count(status)
        logger.info(f"job {status}", extra=log | ({"error": error["code"]} if error else {}))
        self._webhook_wake.set()

    async def _hand_back(self, job_id: str, worker: str, *, wait_s: float = 0.0) -> None:
        with contextlib.suppress(StoreUnavailableError):
            await self.queue.release(job_id, worker, wait_s=wait_s)

    async def _keep_lease(self, worker: str, job_id: str, work: asyncio.Future[Any]) -> None:
        while True:
            await asyncio.sleep(self.queue.lease_s / 3)
            with contextlib.suppress(StoreUnavailableError):
                if not await self.queue.renew(job_id, worker):
                    # Cancelled, or taken over after a lapse: stop spending the cores on it.
                    work.cancel()
                    return

    async def _deliver_webhooks(self) -> None:
        # One delivery's failure, whatever it is, must not end the deliveries of every key:
        # it is logged, and the delivery it concerns is retried later or given up.
        while True:
            job = None
            if self._webhooks is not None:
                try:
                    job = await self.queue.claim_webhook(hold_s=60)
                except StoreUnavailableError:
                    pass
                except Exception:
                    logger.exception("webhook claim failed")
            if job is None:
                await self._idle(self._webhook_wake)
                continue
            try:
                await self._deliver(job)
            except Exception:
                # Still held for hold_s: then claimed again, its attempts counting.
                logger.exception("webhook delivery failed", extra={"job_id": job.id})

    async def _deliver(self, job: Job) -> None:
        # In the trace of the request that created the job; the POST carries its traceparent.
        with self._tracer.start_as_current_span(
            "webhook.deliver",
            context=context_of(job.traceparent),
            kind=SpanKind.CLIENT,
            attributes={
                "veracity.job.id": job.id,
                "veracity.webhook.attempt": job.webhook_attempts,
                "veracity.request_id": job.request_id,
            },
        ) as span:
            await self._deliver_traced(job, span)

    async def _deliver_traced(self, job: Job, span: Span) -> None:
        assert self._webhooks is not None
        assert job.webhook_url is not None
        try:
            delivery = await self._webhooks.send(
                job.webhook_url, webhook_payload(job), job.id, key_id=job.key_id
            )
        except Exception as e:
            logger.exception("webhook delivery failed", extra={"job_id": job.id})
            delivery = Delivery(False, f"the delivery failed on an unexpected error ({e!r:.200})")
        settings = self._settings
        retry: float | None = None
        if (
            not delivery.delivered
            and not delivery.final
            and job.webhook_attempts < settings.webhook_attempts
        ):
            retry = settings.webhook_backoff_s * 2 ** (job.webhook_attempts - 1)
        outcome = "delivered" if delivery.delivered else "retry" if retry else "failed"
        span.set_attribute("veracity.webhook.outcome", outcome)
        if not delivery.delivered:
            span.set_status(Status(StatusCode.ERROR, delivery.error))
        if self._metrics is not None:
            self._metrics.webhooks.labels(outcome).inc()
        logger.info(
            "webhook %s",
            outcome,
            extra={"job_id": job.id, "attempt": job.webhook_attempts, "error": delivery.error},
        )
        with contextlib.suppress(StoreUnavailableError):
            await self.queue.webhook_outcome(
                job.id, delivered=delivery.delivered, error=delivery.error, retry_in_s=retry
            )

    async def _watch_depth(self, metrics: ServiceMetrics) -> None:
        while True:
            with contextlib.suppress(StoreUnavailableError):
                depth = await self.queue.depth()
                metrics.job_queue_depth.labels("queued").set(depth.queued)
                metrics.job_queue_depth.labels("running").set(depth.running)
                metrics.job_queue_age.set(depth.oldest_queued_s)
            await asyncio.sleep(5)

    def _count(self, status: str) -> None:
        if self._metrics is not None:
            self._metrics.jobs.labels(status).inc()


def webhook_payload(job: Job) -> dict[str, Any]:
    """What the receiver gets: the job's ID, status, and its result or error."""
    return {
        "job_id": job.id,
        "kind": job.kind,
        "status": job.status,
        "result": job.result,
        "error": job.error,
    }
