"""The model service: owns the checkpoint, the device and the worker pool for one app.

Created and closed by the app's lifespan. Loading runs in the background so the HTTP server
answers probes at once: ``/health`` is live while the model loads and ``/ready`` turns 200
only after a warm-up inference. Nothing runs on the event loop: decoding and preprocessing
run in a bounded pool of worker threads, and forward passes run one batch at a time on a
single inference thread, fed by the micro-batcher (concurrent requests share a forward
pass; see batcher.py). Stopping refuses new work, waits for in-flight jobs (up to a drain
time), then releases the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import torch

from veracity.checkpoint import CheckpointMetadata, CheckpointPaths, load_checkpoint
from veracity.devices import DevicePreference, select_device
from veracity.errors import (
    DeadlineExceededError,
    InvalidImageError,
    OverloadedError,
    ServiceUnavailableError,
    VeracityError,
)
from veracity.images import DEFAULT_FORMATS
from veracity.inference.backends import BackendName
from veracity.inference.batcher import MicroBatcher
from veracity.inference.predictor import Prediction, Predictor, PreparedImage, create_predictor
from veracity.metrics import ServiceMetrics
from veracity.verdicts.decision import Verdict, VerdictPolicy
from veracity.video.aggregate import AggregationRule, FrameVerdict
from veracity.video.analysis import FrameSource, PreparedFrame, VideoAnalysis
from veracity.video.plan import SamplingPlan, VideoLimits

logger = logging.getLogger("veracity.service")

State = Literal["starting", "ok", "stopping", "failed"]
T = TypeVar("T")


@dataclass(frozen=True)
class BatchOutput:
    prediction: Prediction
    inference_ms: float  # the whole batch's forward pass
    batch_size: int


@dataclass(frozen=True)
class InferenceResult:
    prediction: Prediction
    verdict: Verdict
    preprocess_ms: float
    inference_ms: float
    batch_size: int


# Added to a video thread's nice value (Linux schedules threads by their own nice value).
VIDEO_THREAD_NICENESS = 10


def _lower_thread_priority() -> None:
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), current + VIDEO_THREAD_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        logger.debug("could not lower the video threads' priority")


class ModelService:
    """Loads one checkpoint and serves predictions from a bounded pool of threads."""

    def __init__(
        self,
        checkpoint: Path,
        *,
        device: DevicePreference = "auto",
        workers: int = 1,
        torch_threads: int | None = None,
        max_batch_size: int = 8,
        batch_wait_s: float = 0.002,
        backend: BackendName = "torch",
        export_dir: Path | None = None,
        max_pixels: int,
        formats: tuple[str, ...] = DEFAULT_FORMATS,
        max_queue: int = 32,
        request_timeout_s: float = 10.0,
        metrics: ServiceMetrics | None = None,
        policy: VerdictPolicy | None = None,
        video_limits: VideoLimits | None = None,
        video_timeout_s: float = 120.0,
        max_concurrent_videos: int = 2,
        batch_share: int | None = None,
    ) -> None:
        self.checkpoint_path = checkpoint
        self.video_limits = video_limits or VideoLimits()
        self._video_timeout_s = video_timeout_s
        self._max_concurrent_videos = max_concurrent_videos
        # Places of a forward pass that bulk items (video frames, batch files) may take while
        # single images wait; see ARCHITECTURE.md, "Fairness between clients".
        self.batch_share = batch_share or max(1, max_batch_size // 8)
        self._videos = 0  # videos being analysed
        self._video_executor: ThreadPoolExecutor | None = None
        self.policy = policy or VerdictPolicy()
        self._device_preference = device
        self._workers = workers
        self._torch_threads = torch_threads
        self._max_pixels = max_pixels
        self._formats = formats
        self._metrics = metrics
        self._backend_name = backend
        self._export_dir = export_dir
        self._max_batch_size = max_batch_size
        self._batch_wait_s = batch_wait_s
        self._max_queue = max_queue
        self._request_timeout_s = request_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._inference_executor: ThreadPoolExecutor | None = None
        self._batcher: MicroBatcher[torch.Tensor, BatchOutput] | None = None
        self._predictor: Predictor | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._in_flight = 0  # admitted requests: decoding, queued or in a forward pass
        self._preprocessing = 0  # requests being decoded: they will reach the batcher soon
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.state: State = "starting"
        self.failure: str | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ok"

    @property
    def model_loaded(self) -> bool:
        return self._predictor is not None

    @property
    def queue_depth(self) -> int:
        """Admitted requests not in a forward pass yet (being decoded or waiting)."""
        running = self._batcher.running if self._batcher is not None else 0
        return max(0, self._in_flight - running)

    @property
    def checkpoint_exists(self) -> bool:
        paths = CheckpointPaths.resolve(self.checkpoint_path)
        return paths.weights.is_file() and paths.metadata.is_file()

    @property
    def metadata(self) -> CheckpointMetadata:
        if self._predictor is None:
            raise ServiceUnavailableError("the model is not loaded yet; retry shortly")
        return self._predictor.checkpoint.metadata

    @property
    def calibration_version(self) -> int | None:
        calibration = self.metadata.calibration
        return calibration.version if calibration is not None else None

    @property
    def device(self) -> str:
        return str(self._predictor.device) if self._predictor else "none"

    @property
    def backend(self) -> str:
        return self._predictor.backend.name if self._predictor else self._backend_name

    async def start(self) -> None:
        """Begin loading in the background; returns at once."""
        self._executor = ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="veracity-preprocess"
        )
        # One thread: forward passes run one batch at a time, each using torch's intra-op
        # threads, while the pool above decodes the next requests.
        self._inference_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="veracity-infer"
        )
        # Videos decode in their own threads, so a long video never holds the pool that
        # decodes single images; at a lower CPU priority, so that decoding a video (and
        # FFmpeg's slice threads, which inherit it) yields the cores to inference and to
        # image requests.
        self._video_executor = ThreadPoolExecutor(
            max_workers=self._max_concurrent_videos,
            thread_name_prefix="veracity-video",
            initializer=_lower_thread_priority,
        )
        self._batcher = MicroBatcher(
            self._infer_batch,
            max_batch_size=self._max_batch_size,
            max_wait_s=self._batch_wait_s,
            executor=self._inference_executor,
            on_batch=self._metrics.batch_size.observe if self._metrics is not None else None,
            expected=lambda: self._preprocessing,
            bulk_share=self.batch_share,
        )
        if self._metrics is not None:
            # Both read at scrape time from the service's own counters.
            self._metrics.in_flight.set_function(lambda: self._in_flight)
            self._metrics.queue_depth.set_function(lambda: self.queue_depth)
        self._load_task = asyncio.create_task(self._load(), name="veracity-model-load")

    async def wait_ready(self) -> None:
        """Wait for loading to finish (tests and the CLI); raises if it failed."""
        if self._load_task is not None:
            await asyncio.shield(self._load_task)
        if self.state == "failed":
            raise ServiceUnavailableError(f"model failed to load: {self.failure}")

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            predictor = await self._run(self._load_blocking, self._inference_executor)
            await self._run(lambda: self._warm_up(predictor), self._inference_executor)
        except Exception as e:
            self.state = "failed"
            self.failure = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            logger.error("model failed to load", extra={"reason": self.failure}, exc_info=e)
            return
        self._predictor = predictor
        assert self._batcher is not None
        self._batcher.start()
        if self.state == "starting":
            self.state = "ok"
        meta = predictor.checkpoint.metadata
        if self._metrics is not None:
            self._metrics.model_info.labels(
                meta.model_name, meta.model_version, meta.architecture, meta.weights_sha256
            ).set(1)
        logger.info(
            "model ready",
            extra={
                "model_name": meta.model_name,
                "model_version": meta.model_version,
                "architecture": meta.architecture,
                "device": str(predictor.device),
                "backend": predictor.backend.name,
                "workers": self._workers,
                "max_batch_size": self._max_batch_size,
                "batch_wait_ms": self._batch_wait_s * 1000,
                "torch_threads": torch.get_num_threads(),
                "load_s": round(time.perf_counter() - started, 3),
            },
        )

    def _load_blocking(self) -> Predictor:
        if self._torch_threads is not None:
            torch.set_num_threads(self._torch_threads)
        device = select_device(self._device_preference)
        checkpoint = load_checkpoint(self.checkpoint_path, device=device)
        return create_predictor(
            checkpoint,
            device,
            backend=self._backend_name,
            export_dir=self._export_dir,
            threads=self._torch_threads,
            formats=self._formats,
            max_pixels=self._max_pixels,
            policy=self.policy,
        )

    def _warm_up(self, predictor: Predictor) -> None:
        # The first forward pass of each shape allocates buffers and picks kernels; pay for
        # it before reporting ready rather than in the first clients' latency.
        channels, height, width = predictor.config.input_size
        patches = predictor.config.patches_per_image
        for batch_size in sorted({1, self._max_batch_size}):
            for _ in range(2):
                predictor.predict(torch.zeros(batch_size, patches, channels, height, width))

    async def _run(self, fn: Callable[[], T], executor: ThreadPoolExecutor | None = None) -> T:
        pool = executor or self._executor
        assert pool is not None, "start() must be called first"
        loop = asyncio.get_running_loop()
        # run_in_executor does not carry context variables; copy them so log lines written
        # in the worker thread keep the request ID.
        context = contextvars.copy_context()
        return await loop.run_in_executor(pool, context.run, fn)

    def check_admission(self) -> None:
        """Refuse at once what ``predict`` would refuse before doing any work.

        The route calls this before reading the body too, so a shed request costs neither
        an upload nor memory.

        Raises:
            ServiceUnavailableError: not ready (loading, failed or shutting down).
            OverloadedError: ``max_queue`` requests are already admitted.
        """
        # "stopping" fails readiness only: requests the server accepted before the signal
        # still finish. New connections are refused by the server; new work is refused here
        # only once stop() has begun.
        if self._predictor is None or self._closed:
            raise ServiceUnavailableError(self._unavailable_reason())
        if self._in_flight >= self._max_queue:
            self.record_shed("overloaded")
            raise OverloadedError(
                f"the service is at capacity ({self._max_queue} requests queued); retry after "
                "the delay in Retry-After, or on another replica"
            )

    def record_shed(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.shed.labels(reason).inc()

    async def predict(
        self, data: bytes, *, robustness_check: bool | None = None
    ) -> InferenceResult:
        """Decode, preprocess, classify and judge one upload off the event loop.

        ``robustness_check`` (None: the deployment's default) also scores the upload
        re-encoded as JPEG 75 and halved, in the same forward pass, and answers
        ``inconclusive`` / ``unstable`` if the verdict flips.

        Admission is bounded (``max_queue``) and each admitted request has
        ``request_timeout_s`` to be answered. Cancelling the caller (a client disconnect)
        frees its slot at once: queued work is dropped before it reaches the model.

        Raises:
            ServiceUnavailableError: not ready (loading, failed or shutting down).
            OverloadedError: the admission queue is full.
            DeadlineExceededError: not served within ``request_timeout_s``.
            InvalidImageError: and subclasses, for uploads that are not accepted images.
        """
        self.check_admission()
        predictor = self._predictor
        assert predictor is not None
        check = self.policy.robustness_check if robustness_check is None else robustness_check
        # Work cancelled by the deadline while waiting in either queue is dropped there (the
        # pool skips cancelled futures, the batcher drops cancelled entries), so it never
        # reaches the model.
        async with self._admitted(self._request_timeout_s):
            return await self._predict_admitted(predictor, data, check)

    async def _predict_admitted(
        self, predictor: Predictor, data: bytes, robustness_check: bool, *, bulk: bool = False
    ) -> InferenceResult:
        t0 = time.perf_counter()
        self._preprocessing += 1
        try:
            prepared = await self._run(
                lambda: predictor.prepare(data, robustness_check=robustness_check)
            )
        finally:
            self._preprocessing -= 1
        preprocess_s = time.perf_counter() - t0
        if self._metrics is not None:
            self._metrics.preprocess_seconds.observe(preprocess_s)
        assert self._batcher is not None
        # The variants (and a face checkpoint's faces) join the same micro-batch as the
        # original where there is room.
        outputs = await asyncio.gather(
            *(
                self._batcher.submit(t, bulk=bulk)
                for t in (*prepared.inputs, *prepared.variants.values())
            )
        )
        count = len(prepared.inputs)
        variants = {
            name: out.prediction
            for name, out in zip(prepared.variants, outputs[count:], strict=True)
        }
        prediction, verdict = predictor.judge_prepared(
            prepared, [out.prediction for out in outputs[:count]], variants
        )
        if self._metrics is not None:
            # Uploads, not forward-pass items: a self-check's variants are not counted.
            self._metrics.images.labels(verdict.label).inc()
            self._metrics.verdicts.labels(verdict.verdict).inc()
            for reason in verdict.reasons:
                self._metrics.reasons.labels(reason.code).inc()
        return InferenceResult(
            prediction=prediction,
            verdict=verdict,
            preprocess_ms=round(preprocess_s * 1000, 3),
            # No face: no forward pass ran.
            inference_ms=max((out.inference_ms for out in outputs), default=0.0),
            batch_size=outputs[0].batch_size if outputs else 0,
        )

    async def predict_many(
        self, uploads: list[bytes], *, robustness_check: bool | None = None
    ) -> list[InferenceResult | VeracityError]:
        """Classify several uploads as one admitted request; each item answers on its own.

        An item that is not an accepted image gets its own error; the others are judged.
        Items are bulk for the batcher (single images go first) and at most one batch of
        them is decoded and waiting at once. The deadline is ``request_timeout_s`` per
        ``batch_share`` items (what a busy service gives bulk items per forward pass).

        Raises:
            ServiceUnavailableError, OverloadedError, DeadlineExceededError: as ``predict``.
        """
        self.check_admission()
        predictor = self._predictor
        assert predictor is not None
        check = self.policy.robustness_check if robustness_check is None else robustness_check
        window = asyncio.Semaphore(self._max_batch_size)

        async def one(data: bytes) -> InferenceResult | VeracityError:
            async with window:
                try:
                    return await self._predict_admitted(predictor, data, check, bulk=True)
                except InvalidImageError as e:
                    return e

        rounds = math.ceil(len(uploads) / self.batch_share) if uploads else 1
        async with self._admitted(self._request_timeout_s * rounds):
            return list(await asyncio.gather(*(one(data) for data in uploads)))

    async def predict_video(
        self,
        data: bytes,
        *,
        plan: SamplingPlan,
        rule: AggregationRule,
        limits: VideoLimits | None = None,
        timeout_s: float | None = None,
        timeout_setting: str = "VERACITY_VIDEO_TIMEOUT_S",
    ) -> VideoAnalysis:
        """Sample, classify and judge a video's frames; aggregate them into one verdict.

        Frames decode one at a time in a video thread and join the shared micro-batches as
        bulk items (single images go first), at most one batch of them in flight. At most
        ``max_concurrent_videos`` videos run at once, each holding one admission slot, under
        ``video_timeout_s``. Jobs pass their own (longer) ``limits`` and ``timeout_s``.

        Raises:
            ServiceUnavailableError, OverloadedError, DeadlineExceededError: as ``predict``
                (OverloadedError also when the video slots are taken).
            InvalidVideoError: and subclasses, for files that are not accepted videos.
        """
        self.check_admission()
        if self._videos >= self._max_concurrent_videos:
            self.record_shed("video_capacity")
            raise OverloadedError(
                f"{self._max_concurrent_videos} videos are already being analysed "
                "(VERACITY_MAX_CONCURRENT_VIDEOS); retry after the delay in Retry-After, or "
                "on another replica"
            )
        predictor = self._predictor
        assert predictor is not None
        self._videos += 1
        try:
            async with self._admitted(timeout_s or self._video_timeout_s, timeout_setting):
                return await self._video_admitted(
                    predictor, data, plan, rule, limits or self.video_limits
                )
        finally:
            self._videos -= 1

    @contextlib.asynccontextmanager
    async def _admitted(
        self, timeout_s: float, setting: str = "VERACITY_REQUEST_TIMEOUT_S"
    ) -> AsyncIterator[None]:
        """Hold one admission slot under a deadline (the shared part of every entry point)."""
        self._in_flight += 1
        self._idle.clear()
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                yield
        except TimeoutError as e:
            if not deadline.expired():
                raise
            self.record_shed("deadline_exceeded")
            raise DeadlineExceededError(
                f"not served within the {timeout_s:g} s deadline ({setting}) because the "
                "service is busy; retry later or on another replica"
            ) from e
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _video_admitted(
        self,
        predictor: Predictor,
        data: bytes,
        plan: SamplingPlan,
        rule: AggregationRule,
        limits: VideoLimits,
    ) -> VideoAnalysis:
        from veracity.video.sampling import VideoReader  # imports FFmpeg

        started = time.perf_counter()
        pool = self._video_executor
        assert pool is not None
        assert self._batcher is not None
        batcher = self._batcher
        reader = await self._run(lambda: VideoReader(data, limits), pool)
        source = FrameSource(predictor, reader, plan, limits, started=started)
        # One batch of frames decoded and waiting at once: memory stays bounded, and a video
        # alone still fills whole forward passes.
        window = asyncio.Semaphore(self._max_batch_size)

        async def score(timestamp: float, prepared: PreparedImage) -> FrameVerdict:
            try:
                outputs = await asyncio.gather(
                    *(batcher.submit(t, bulk=True) for t in prepared.inputs)
                )
            finally:
                window.release()
            predictions = [output.prediction for output in outputs]
            return FrameVerdict(timestamp, predictor.judge_prepared(prepared, predictions)[1])

        tasks: list[asyncio.Future[FrameVerdict]] = []
        step: asyncio.Future[PreparedFrame | None] | None = None
        try:
            while True:
                await window.acquire()
                self._preprocessing += 1
                try:
                    step = asyncio.ensure_future(self._run(source.next, pool))
                    item = await step
                finally:
                    self._preprocessing -= 1
                if item is None:
                    window.release()
                    break
                tasks.append(asyncio.ensure_future(score(*item)))
            judged = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        finally:
            # Close the file after any decoding step still running (a cancelled request's
            # last frame), never concurrently with it.
            if step is not None and not step.done():
                step.add_done_callback(lambda _: self._close_reader(pool, reader.close))
            else:
                self._close_reader(pool, reader.close)
        analysis = source.conclude(judged, rule)
        if self._metrics is not None:
            self._metrics.videos.labels(analysis.verdict.verdict).inc()
            self._metrics.video_frames.observe(len(judged))
            self._metrics.video_decode_seconds.observe(source.decode_s)
            for reason in analysis.verdict.reasons:
                self._metrics.reasons.labels(reason.code).inc()
        return analysis

    @staticmethod
    def _close_reader(pool: ThreadPoolExecutor, close: Callable[[], None]) -> None:
        try:
            pool.submit(close)
        except RuntimeError:  # the pool is shut down (stopping): nothing decodes any more
            close()

    def _infer_batch(self, tensors: list[torch.Tensor]) -> list[BatchOutput]:
        """One forward pass for a whole batch (runs on the inference thread)."""
        predictor = self._predictor
        if predictor is None:
            raise ServiceUnavailableError(self._unavailable_reason())
        t0 = time.perf_counter()
        predictions = predictor.predict(tensors)
        elapsed = time.perf_counter() - t0
        if self._metrics is not None:
            self._metrics.inference_seconds.observe(elapsed)
        ms = round(elapsed * 1000, 3)
        return [BatchOutput(p, ms, len(tensors)) for p in predictions]

    def _unavailable_reason(self) -> str:
        if self._closed or self.state == "stopping":
            return "the service is shutting down; retry on another replica"
        if self.state == "starting":
            return "the model is still loading; retry shortly"
        return f"the model failed to load ({self.failure}); see the server log"

    def begin_shutdown(self) -> None:
        """Fail readiness (the first step of a graceful shutdown); requests continue."""
        if self.state in ("ok", "starting"):
            self.state = "stopping"
            logger.info(
                "shutdown started: readiness now failing", extra={"in_flight": self._in_flight}
            )

    async def stop(self, drain_s: float) -> None:
        """Refuse new work, wait up to ``drain_s`` for in-flight jobs, release the model."""
        self.begin_shutdown()
        self._closed = True
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=drain_s)
        except TimeoutError:
            logger.warning("drain time exceeded", extra={"in_flight": self._in_flight})
        if self._batcher is not None:
            await self._batcher.stop()
        for executor in (self._executor, self._inference_executor, self._video_executor):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        self._predictor = None
        logger.info("model service stopped")
