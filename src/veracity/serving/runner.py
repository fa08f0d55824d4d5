"""One loaded model version: its predictor, its micro-batcher and its forward passes.

A runner is built by the registry when a version is loaded and stopped when it is unloaded.
It does not own threads or admission: decoding runs in the service's shared worker pool,
videos in the shared video pool, and forward passes of every runner on the one shared
inference thread (two models on the same cores gain nothing from running at once). Each
request holds a lease on the runner it started on, so a version taken out of service
finishes the requests already on it before it is released.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from opentelemetry.trace import NoOpTracer, Tracer

from veracity.checkpoint import CheckpointMetadata, load_checkpoint
from veracity.devices import select_device
from veracity.errors import InvalidImageError, ServiceUnavailableError, VeracityError
from veracity.inference.explanation import Explanation, explain_grad_cam
from veracity.inference.predictor import Prediction, Predictor, create_predictor
from veracity.metrics import ServiceMetrics
from veracity.repository.layout import ModelVersion
from veracity.serving.admission import (
    REQUEST_TIMEOUT_SETTING,
    VIDEO_TIMEOUT_SETTING,
    Admission,
    Deadline,
)
from veracity.serving.batcher import MicroBatcher, Pending
from veracity.serving.frames import VideoScoring
from veracity.serving.pools import Pools, run_in
from veracity.settings import ServiceOptions
from veracity.tracing import child_span
from veracity.verdicts.decision import Verdict
from veracity.video.aggregate import AggregationRule
from veracity.video.analysis import VideoAnalysis
from veracity.video.plan import SamplingPlan, VideoLimits

logger = logging.getLogger("veracity.runner")


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
    perceptual_hash: str | None = None  # of the image decoded for the model


class ModelRunner:
    """Serves one model version; ``load`` must finish before ``start``."""

    def __init__(
        self,
        version: ModelVersion,
        *,
        options: ServiceOptions,
        pools: Pools,
        admission: Admission,
        metrics: ServiceMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.model = version
        self.options = options.runner
        self.images = options.images
        self.policy = options.policy
        self.video_limits = options.video_limits
        self.video_timeout_s = options.admission.video_timeout_s
        self.batch_share = options.batch_share
        self._pools = pools
        self._admission = admission
        self._metrics = metrics
        self._tracer = tracer or NoOpTracer()
        self._predictor: Predictor | None = None
        self._batcher: MicroBatcher[torch.Tensor, BatchOutput] | None = None
        self._pending = Pending()  # uploads and frames being decoded: batches wait for them
        self.memory_bytes = version.size_bytes  # an estimate until loaded, then measured
        self.last_used = time.monotonic()
        self.leases = 0  # requests running on this version
        self._released = asyncio.Event()
        self._released.set()

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def loaded(self) -> bool:
        return self._predictor is not None

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
    def predictor(self) -> Predictor:
        if self._predictor is None:
            raise ServiceUnavailableError("the model is not loaded yet; retry shortly")
        return self._predictor

    @property
    def device(self) -> str:
        return str(self._predictor.device) if self._predictor else "none"

    @property
    def backend(self) -> str:
        return self._predictor.backend.name if self._predictor else self.options.backend

    @property
    def engine_fingerprint(self) -> str | None:
        """What tells this engine's answers apart from FP32's (the INT8 graph's SHA-256)."""
        return getattr(self._predictor.backend, "fingerprint", None) if self._predictor else None

    @property
    def queued(self) -> int:
        """Items of this version in a forward pass now."""
        return self._batcher.running if self._batcher is not None else 0

    def estimated_bytes(self) -> int:
        """Memory the loaded version will take, before it is loaded: the weights once per
        engine that may hold them (the ONNX backend keeps an exported copy beside the
        PyTorch model; with auto, which engine serves is known only after the load)."""
        return self.model.size_bytes * (2 if self.options.backend != "torch" else 1)

    # -- loading -----------------------------------------------------------------------

    async def load(self) -> None:
        """Load, verify and warm up the checkpoint on the loader thread.

        Raises:
            CheckpointError, ConfigurationError: the checkpoint cannot be served; nothing
                is kept.
        """
        started = time.perf_counter()
        predictor = await run_in(self._pools.loader, self._load_blocking)
        await run_in(self._pools.loader, lambda: self._warm_up(predictor))
        # One small pass where requests will run, so the inference thread's own engine
        # state (its OpenMP pool, say) is not built during a client's request.
        await run_in(self._pools.inference, lambda: self._warm_up(predictor, batch_sizes=(1,)))
        self._predictor = predictor
        # What the engine actually chosen holds: the model, at least its weights file, and
        # the ONNX copy only where ONNX Runtime serves (auto may fall back to PyTorch).
        exported = self.model.size_bytes if predictor.backend.name.startswith("onnx") else 0
        self.memory_bytes = max(self.model.size_bytes, _model_bytes(predictor)) + exported
        meta = predictor.checkpoint.metadata
        logger.info(
            "model version loaded",
            extra={
                "model": self.name,
                "model_version": self.version,
                "architecture": meta.architecture,
                "device": str(predictor.device),
                "backend": predictor.backend.name,
                "memory_mb": round(self.memory_bytes / 2**20, 1),
                "max_batch_size": self.options.max_batch_size,
                "torch_threads": torch.get_num_threads(),
                "load_s": round(time.perf_counter() - started, 3),
            },
        )

    def _load_blocking(self) -> Predictor:
        options = self.options
        device = select_device(options.device)
        checkpoint = load_checkpoint(self.model.checkpoint, device=device)
        return create_predictor(
            checkpoint,
            device,
            backend=options.backend,
            precision=options.precision,
            export_dir=options.export_dir,
            threads=options.torch_threads,
            formats=self.images.formats,
            max_pixels=self.images.max_pixels,
            policy=self.policy,
            decode_budget=self.images.decode_budget,
        )

    def _warm_up(self, predictor: Predictor, batch_sizes: tuple[int, ...] | None = None) -> None:
        # The first forward pass of each shape allocates buffers and picks kernels; pay for
        # it before the version takes traffic rather than in the first clients' latency.
        channels, height, width = predictor.config.input_size
        patches = predictor.config.patches_per_image
        for batch_size in batch_sizes or sorted({1, self.options.max_batch_size}):
            for _ in range(2):
                predictor.predict(torch.zeros(batch_size, patches, channels, height, width))

    def start(self) -> None:
        """Start taking requests (on the event loop, after ``load``)."""
        metrics = self._metrics
        self._batcher = MicroBatcher(
            self._infer_batch,
            max_batch_size=self.options.max_batch_size,
            max_wait_s=self.options.batch_wait_s,
            executor=self._pools.inference,
            on_batch=metrics.batch_size.observe if metrics is not None else None,
            expected=lambda: self._pending.count,
            bulk_share=self.batch_share,
            tracer=self._tracer,
            streams=self.options.streams,
            span_attributes={
                "veracity.model.name": self.name,
                "veracity.model.version": self.version,
            },
        )
        self._batcher.start()

    # -- leases ------------------------------------------------------------------------

    def acquire(self) -> None:
        self.leases += 1
        self.last_used = time.monotonic()
        self._released.clear()

    def release(self) -> None:
        self.leases -= 1
        if self.leases == 0:
            self._released.set()

    async def stop(self, drain_s: float) -> None:
        """Wait up to ``drain_s`` for the requests on this version, then release it."""
        try:
            if self.leases:
                await asyncio.wait_for(self._released.wait(), timeout=drain_s)
        except TimeoutError:
            logger.warning(
                "version unloaded with requests still on it",
                extra={"model": self.name, "model_version": self.version, "leases": self.leases},
            )
        if self._batcher is not None:
            await self._batcher.stop()
        self._predictor = None
        logger.info(
            "model version unloaded", extra={"model": self.name, "model_version": self.version}
        )

    # -- serving -----------------------------------------------------------------------

    async def predict(
        self, data: bytes, *, robustness_check: bool | None = None
    ) -> InferenceResult:
        """Decode, preprocess, classify and judge one upload off the event loop.

        ``robustness_check`` (None: the deployment's default) also scores the upload
        re-encoded as JPEG 75 and halved, in the same forward pass, and answers
        ``inconclusive`` / ``unstable`` if the verdict flips. The request holds one
        admission slot under ``request_timeout_s``; cancelling it (a client disconnect)
        drops its queued work before it reaches the model.

        Raises:
            OverloadedError: the admission queue is full.
            DeadlineExceededError: not served within ``request_timeout_s``.
            InvalidImageError: and subclasses, for uploads that are not accepted images.
        """
        check = self.policy.robustness_check if robustness_check is None else robustness_check
        async with self._admission.admitted():
            return await self._predict_admitted(data, check)

    async def _predict_admitted(
        self, data: bytes, robustness_check: bool, *, bulk: bool = False
    ) -> InferenceResult:
        predictor = self.predictor
        t0 = time.perf_counter()
        with (
            self._pending.preparing(),
            child_span(self._tracer, "image.decode", attributes={"veracity.bytes": len(data)}),
        ):
            prepared = await run_in(
                self._pools.preprocess,
                # The hash is taken here, from the image decoded for the model: one decode
                # per upload, inside this bounded pool.
                lambda: predictor.prepare(
                    data, robustness_check=robustness_check, perceptual_hash=True
                ),
            )
        preprocess_s = time.perf_counter() - t0
        if self._metrics is not None:
            self._metrics.preprocess_seconds.observe(preprocess_s)
        batcher = self._batcher
        assert batcher is not None, "start() must be called first"
        # The variants (and a face checkpoint's faces) join the same micro-batch as the
        # original where there is room.
        outputs = await asyncio.gather(
            *(batcher.submit(t, bulk=bulk) for t in (*prepared.inputs, *prepared.variants.values()))
        )
        count = len(prepared.inputs)
        variants = {
            name: out.prediction
            for name, out in zip(prepared.variants, outputs[count:], strict=True)
        }
        with child_span(self._tracer, "verdict.gates") as span:
            prediction, verdict = predictor.judge_prepared(
                prepared, [out.prediction for out in outputs[:count]], variants
            )
            span.set_attributes(
                {
                    "veracity.verdict": verdict.verdict,
                    "veracity.reasons": [reason.code for reason in verdict.reasons],
                }
            )
        self._count(verdict)
        return InferenceResult(
            prediction=prediction,
            verdict=verdict,
            preprocess_ms=round(preprocess_s * 1000, 3),
            # No face: no forward pass ran.
            inference_ms=max((out.inference_ms for out in outputs), default=0.0),
            batch_size=outputs[0].batch_size if outputs else 0,
            perceptual_hash=prepared.perceptual_hash,
        )

    async def grad_cam(self, data: bytes) -> Explanation:
        """Grad-CAM's explanation of one upload (``inference.attribution``), on request.

        It holds its own admission slot, decodes the upload again in the decode pool, and
        runs its forward and backward pass in the inference thread, between micro-batches
        (about 7x the plain answer's time through the service: make bench-explain).
        """
        predictor = self.predictor
        async with self._admission.admitted():
            with self._pending.preparing():
                prepared = await run_in(
                    self._pools.preprocess,
                    lambda: predictor.prepare(data, robustness_check=False),
                )
            return await run_in(
                self._pools.inference,
                lambda: explain_grad_cam(
                    predictor.config, prepared.faces, lambda: predictor.grad_cam(prepared)
                ),
            )

    def _count(self, verdict: Verdict) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        # Uploads, not forward-pass items: a self-check's variants are not counted.
        metrics.images.labels(verdict.label).inc()
        metrics.verdicts.labels(verdict.verdict).inc()
        metrics.version_verdicts.labels(self.name, self.version, verdict.verdict).inc()
        for reason in verdict.reasons:
            metrics.reasons.labels(reason.code).inc()

    async def predict_many(
        self, uploads: list[bytes], *, robustness_check: bool | None = None
    ) -> list[InferenceResult | VeracityError]:
        """Classify several uploads as one admitted request; each item answers on its own.

        An item that is not an accepted image gets its own error; the others are judged.
        Items are bulk for the batcher (single images go first) and at most one batch of
        them is decoded and waiting at once, under ``batch_deadline``.

        Raises:
            OverloadedError, DeadlineExceededError: as ``predict``.
        """
        check = self.policy.robustness_check if robustness_check is None else robustness_check
        window = asyncio.Semaphore(self.options.max_batch_size)

        async def one(data: bytes) -> InferenceResult | VeracityError:
            async with window:
                try:
                    return await self._predict_admitted(data, check, bulk=True)
                except InvalidImageError as e:
                    return e

        async with self._admission.admitted(self.batch_deadline(len(uploads))):
            return list(await asyncio.gather(*(one(data) for data in uploads)))

    def batch_deadline(self, items: int) -> Deadline:
        """A batch's deadline: ``request_timeout_s`` per ``batch_share`` items (what a busy
        service gives bulk items per forward pass)."""
        rounds = math.ceil(items / self.batch_share) if items else 1
        return Deadline(self._admission.request_timeout_s * rounds, REQUEST_TIMEOUT_SETTING)

    def video_deadline(self, deadline: Deadline | None = None) -> Deadline:
        """A video's deadline: a job's own, else ``video_timeout_s``."""
        return deadline or Deadline(self.video_timeout_s, VIDEO_TIMEOUT_SETTING)

    async def predict_video(
        self,
        data: bytes,
        *,
        plan: SamplingPlan,
        rule: AggregationRule,
        limits: VideoLimits | None = None,
        deadline: Deadline | None = None,
    ) -> VideoAnalysis:
        """Sample, classify and judge a video's frames; aggregate them into one verdict.

        Frames decode one at a time in a video thread and join the shared micro-batches as
        bulk items (single images go first), at most one batch of them in flight. At most
        ``max_concurrent_videos`` videos run at once, each holding one admission slot, under
        ``video_timeout_s``. Jobs pass their own (longer) ``limits`` and ``deadline``.

        Raises:
            OverloadedError, DeadlineExceededError: as ``predict`` (OverloadedError also
                when the video slots are taken).
            InvalidVideoError: and subclasses, for files that are not accepted videos.
        """
        # The queue is checked before the video places (admitted first), so a full queue
        # answers overloaded whatever the video places hold.
        async with (
            self._admission.admitted(self.video_deadline(deadline)),
            self._admission.video_slot(),
        ):
            with child_span(
                self._tracer, "video.analyse", attributes={"veracity.bytes": len(data)}
            ) as span:
                analysis = await self._video().analyse(
                    data, plan, rule, limits or self.video_limits
                )
                span.set_attribute("veracity.verdict", analysis.verdict.verdict)
                return analysis

    def _video(self) -> VideoScoring:
        return VideoScoring(
            self.predictor,
            pool=self._pools.video,
            score=self._score_bulk,
            window=self.options.max_batch_size,
            pending=self._pending,
            metrics=self._metrics,
        )

    async def _score_bulk(self, inputs: Sequence[torch.Tensor]) -> list[Prediction]:
        batcher = self._batcher
        assert batcher is not None, "start() must be called first"
        outputs = await asyncio.gather(*(batcher.submit(t, bulk=True) for t in inputs))
        return [output.prediction for output in outputs]

    def _infer_batch(self, tensors: list[torch.Tensor]) -> list[BatchOutput]:
        """One forward pass for a whole batch (runs on the inference thread)."""
        predictor = self._predictor
        if predictor is None:
            raise ServiceUnavailableError("this model version was unloaded; retry")
        t0 = time.perf_counter()
        predictions = predictor.predict(tensors)
        elapsed = time.perf_counter() - t0
        if self._metrics is not None:
            self._metrics.inference_seconds.observe(elapsed)
            self._metrics.version_inference_seconds.labels(self.name, self.version).observe(elapsed)
        ms = round(elapsed * 1000, 3)
        return [BatchOutput(p, ms, len(tensors)) for p in predictions]


def _model_bytes(predictor: Predictor) -> int:
    """Parameters and buffers of the PyTorch model (the ONNX copy is in the estimate)."""
    model = predictor.model
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
