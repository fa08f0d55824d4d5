"""The model service: the one way into the serving core, for REST, V2, jobs and the CLI.

Created and closed by the app's lifespan. Loading runs in the background so the HTTP server
answers probes at once: ``/health`` is live while the default model loads and ``/ready``
turns 200 only after its warm-up inference. Routes call its verbs and read its typed
answers (catalog.py), never its parts, which have one job each:

- ``Admission`` (admission.py) bounds the work inside the service, for every model at once:
  queue bound, deadlines, shedding, video slots.
- ``ModelRegistry`` (registry.py) routes each request to a version (serving, canary,
  pinned); its ``LoadedVersions`` (loaded.py) hold one ``ModelRunner`` per loaded version
  within the memory budget.
- ``ModelRunner`` (runner.py) serves one version: its predictor, micro-batcher and forward
  passes.

The service owns the threads they share (pools.py). Stopping refuses new work, waits for
in-flight requests (up to a drain time), then releases every version.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Literal

from opentelemetry.trace import Tracer

from veracity.checkpoint import CheckpointMetadata, CheckpointPaths
from veracity.devices import select_device
from veracity.errors import ModelNotFoundError, ServiceUnavailableError
from veracity.metrics import ServiceMetrics
from veracity.repository.layout import ModelRepository, ModelVersion
from veracity.serving.admission import Admission
from veracity.serving.catalog import Catalog, MemoryUse, ModelState, ShadowTally, describe
from veracity.serving.lifecycle import NO_CONDITIONS, Change, Lifecycle
from veracity.serving.pools import Pools
from veracity.serving.registry import ModelRegistry, Selection
from veracity.serving.runner import ModelRunner
from veracity.settings import ServiceOptions
from veracity.store.revisions import RevisionLog
from veracity.verdicts.decision import VerdictPolicy
from veracity.video.plan import VideoLimits

logger = logging.getLogger("veracity.service")

State = Literal["starting", "ok", "stopping", "failed"]


class ModelService:
    """Serves predictions from the versions of a model repository (or one checkpoint)."""

    def __init__(
        self,
        source: Path | ModelRepository,
        options: ServiceOptions | None = None,
        *,
        metrics: ServiceMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.repository = (
            source if isinstance(source, ModelRepository) else ModelRepository(checkpoint=source)
        )
        self.options = options or ServiceOptions()
        self._metrics = metrics
        self._tracer = tracer
        self.admission = Admission(self.options.admission, metrics=metrics)
        self._registry = ModelRegistry(
            self.repository,
            make_runner=self._make_runner,
            options=self.options.registry,
            drain_s=self.options.admission.drain_s,
            metrics=metrics,
        )
        self._lifecycle = Lifecycle(self._registry, self.options.registry)
        self._pools: Pools | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._shadows: set[asyncio.Task[None]] = set()
        # (model, shadow version) -> outcome -> count, for GET /models (the metric is for
        # Prometheus; an admin page should not need one).
        self._shadow_outcomes: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self._closed = False
        self.state: State = "starting"
        self.failure: str | None = None

    # -- what the routes read -------------------------------------------------------------

    @property
    def policy(self) -> VerdictPolicy:
        return self.options.policy

    @property
    def video_limits(self) -> VideoLimits:
        return self.options.video_limits

    @property
    def batch_share(self) -> int:
        return self.options.batch_share

    @property
    def ready(self) -> bool:
        return self.state == "ok"

    @property
    def model_loaded(self) -> bool:
        return self._registry.default_runner is not None

    @property
    def default(self) -> ModelRunner:
        """The default model's serving version."""
        runner = self._registry.default_runner
        if runner is None or not runner.loaded or self._closed:
            raise ServiceUnavailableError(self._unavailable_reason())
        return runner

    @property
    def metadata(self) -> CheckpointMetadata:
        return self.default.metadata

    @property
    def calibration_version(self) -> int | None:
        return self.default.calibration_version

    @property
    def device(self) -> str:
        runner = self._registry.default_runner
        return runner.device if runner is not None else "none"

    @property
    def backend(self) -> str:
        runner = self._registry.default_runner
        return runner.backend if runner is not None else str(self.options.runner.backend)

    @property
    def queue_depth(self) -> int:
        """Admitted requests not in a forward pass yet (being decoded or waiting)."""
        running = sum(r.queued for r in self._registry.runners.values())
        return max(0, self.admission.in_flight - running)

    @property
    def checkpoint_exists(self) -> bool:
        if self.repository.checkpoint is None:
            assert self.repository.root is not None
            return self.repository.root.is_dir()
        paths = CheckpointPaths.resolve(self.repository.checkpoint)
        return paths.weights.is_file() and paths.metadata.is_file()

    # -- life -------------------------------------------------------------------------------

    def _make_runner(self, version: ModelVersion) -> ModelRunner:
        assert self._pools is not None, "start() must be called first"
        return ModelRunner(
            version,
            options=self.options,
            pools=self._pools,
            admission=self.admission,
            metrics=self._metrics,
            tracer=self._tracer,
        )

    async def start(self) -> None:
        """Begin loading the default model in the background; returns at once."""
        runner = self.options.runner
        if select_device(runner.device).type != "cpu" and runner.streams > 1:
            # An accelerator runs one batch at a time anyway; one stream gives it the
            # larger batches that use it best. Every runner reads the options from here.
            runner = dataclasses.replace(runner, streams=1)
            self.options = dataclasses.replace(self.options, runner=runner)
        self._pools = Pools.create(
            workers=runner.workers,
            videos=self.admission.max_concurrent_videos,
            torch_threads=runner.torch_threads,
            streams=runner.streams,
        )
        self.admission.watch(lambda: self.queue_depth)
        self._load_task = asyncio.create_task(self._load(), name="veracity-model-load")

    async def wait_ready(self) -> None:
        """Wait for loading to finish (tests and the CLI); raises if it failed."""
        if self._load_task is not None:
            await asyncio.shield(self._load_task)
        if self.state == "failed":
            raise ServiceUnavailableError(f"model failed to load: {self.failure}")

    def share_lifecycle(self, log: RevisionLog) -> None:
        """Keep the models' desired state in the results store, shared by every replica on
        it (called before ``start``)."""
        self._lifecycle.share(log)

    async def _load(self) -> None:
        try:
            await self._lifecycle.start()
        except Exception as e:
            self.state = "failed"
            reason = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            # Clients read this in 503 bodies: no server paths there; the log has them.
            self.failure = self.repository.public(reason)
            logger.error("model failed to load", extra={"reason": reason}, exc_info=e)
            return
        if self.state == "starting":
            self.state = "ok"
        runner = self._registry.default_runner
        assert runner is not None
        logger.info(
            "model ready",
            extra={
                "model_name": runner.name,
                "model_version": runner.version,
                "repository": self.repository.describe(),
                "device": runner.device,
                "backend": runner.backend,
                "workers": self.options.runner.workers,
            },
        )

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
                "shutdown started: readiness now failing",
                extra={"in_flight": self.admission.in_flight},
            )

    async def stop(self, drain_s: float) -> None:
        """Refuse new work, wait up to ``drain_s`` for in-flight work, release the models."""
        self.begin_shutdown()
        self._closed = True
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        for task in self._shadows:
            task.cancel()
        if not await self.admission.wait_idle(drain_s):
            logger.warning("drain time exceeded", extra={"in_flight": self.admission.in_flight})
        await self._lifecycle.stop()
        await self._registry.stop()
        if self._pools is not None:
            self._pools.shutdown()
        logger.info("model service stopped")

    # -- the models: GET /models, the admin routes and the V2 metadata --------------------

    async def catalog(self) -> Catalog:
        """Every model with its versions, their state and traffic, and the memory held.

        The repository is read again first: versions dropped in since show up.
        """
        await self._registry.rescan()
        registry = self._registry
        return Catalog(
            models=self._described(),
            memory=MemoryUse(registry.budget_bytes, registry.used_bytes()),
            fleet=await self._lifecycle.fleet(),
        )

    def _described(self) -> tuple[ModelState, ...]:
        """``describe``'s models, each with its shadow's tally when it has a shadow."""
        models = []
        for model in describe(self._registry):
            if model.shadow_version is not None:
                counts = self._shadow_outcomes.get((model.name, model.shadow_version), Counter())
                tally = ShadowTally(
                    model.shadow_version,
                    agree=counts["agree"],
                    disagree=counts["disagree"],
                    dropped=counts["dropped"],
                )
                model = dataclasses.replace(model, shadow_tally=tally)
            models.append(model)
        return tuple(models)

    async def model(self, name: str) -> ModelState:
        """One model as ``catalog`` describes it (ModelNotFoundError if unknown)."""
        await self._registry.rescan()
        return self._model(name)

    def _model(self, name: str) -> ModelState:
        for model in self._described():
            if model.name == name:
                return model
        raise ModelNotFoundError(f"no model named {name!r}; GET /models lists the models")

    async def load_version(
        self, name: str, version: str, change: Change = NO_CONDITIONS
    ) -> ModelState:
        """Load and warm up a version on every replica, without traffic (admin)."""
        await self._lifecycle.load(name, version, change)
        return self._model(name)

    async def unload_version(
        self, name: str, version: str, change: Change = NO_CONDITIONS
    ) -> ModelState:
        """Stop keeping a version warm anywhere, and unload it here (admin)."""
        await self._lifecycle.unload(name, version, change)
        return self._model(name)

    async def promote(self, name: str, version: str, change: Change = NO_CONDITIONS) -> ModelState:
        """Serve ``version`` on every replica, loaded and warmed up first (admin)."""
        await self._lifecycle.promote(name, version, change)
        return self._model(name)

    async def rollback(self, name: str, change: Change = NO_CONDITIONS) -> ModelState:
        """Serve the previous version again, on every replica (admin)."""
        await self._lifecycle.rollback(name, change)
        return self._model(name)

    async def set_traffic(
        self,
        name: str,
        *,
        canary: str | None,
        canary_percent: float,
        shadow: str | None,
        change: Change = NO_CONDITIONS,
    ) -> ModelState:
        """Send a share of traffic to a canary and/or score a shadow, everywhere (admin)."""
        await self._lifecycle.set_traffic(
            name, canary=canary, canary_percent=canary_percent, shadow=shadow, change=change
        )
        return self._model(name)

    async def sync_models(self) -> None:
        """Apply the latest revision of the desired state now (tests; a replica does it
        every VERACITY_MODEL_SYNC_S seconds)."""
        await self._lifecycle.sync()

    def check_model(self, name: str | None, version: str | None) -> None:
        """Raise ModelNotFoundError unless the model (and version) can be asked for."""
        self._registry.check(name, version)

    def check_runnable(self, name: str | None, version: str | None) -> None:
        """Raise now what running on this choice later would (queued work: a job).

        Raises:
            ModelNotFoundError: an unknown model or version.
            ModelNotLoadedError: not loaded, and on-demand loads are off.
        """
        self._registry.check_runnable(name, version)

    def versions(self, name: str, version: str | None = None) -> list[str]:
        """The versions of ``name`` (just ``version`` when one is named).

        Raises:
            ModelNotFoundError: an unknown model or version.
        """
        self._registry.check(name, version)
        return [version] if version is not None else self._registry.versions_of(name)

    def require_loaded(self, name: str, version: str | None = None) -> None:
        """Raise unless the version (the serving one unless named) is loaded.

        Raises:
            ModelNotFoundError: an unknown model or version.
            ServiceUnavailableError: known, but not loaded.
        """
        self._registry.check(name, version)
        chosen = version or self._registry.serving_version(name)
        if not self._registry.is_loaded((name, chosen)):
            how = (
                "it loads on its first inference request"
                if self._registry.load_on_demand
                else "this deployment loads versions only when an admin asks "
                "(VERACITY_MODEL_LOAD_ON_DEMAND=false)"
            )
            raise ServiceUnavailableError(f"{name}/{chosen} is not loaded; {how}")

    # -- serving ----------------------------------------------------------------------------

    def check_admission(self) -> None:
        """Refuse at once what a prediction would refuse before doing any work.

        Routes call this before reading the body, so a shed request costs neither an upload
        nor memory.

        Raises:
            ServiceUnavailableError: not ready (loading, failed or shutting down).
            OverloadedError: ``max_queue`` requests are already admitted.
        """
        # "stopping" fails readiness only: requests the server accepted before the signal
        # still finish. New work is refused here only once stop() has begun.
        if self._registry.default_runner is None or self._closed:
            raise ServiceUnavailableError(self._unavailable_reason())
        self.admission.check()

    def record_shed(self, reason: str) -> None:
        self.admission.record_shed(reason)

    @contextlib.asynccontextmanager
    async def use(
        self, model: str | None = None, version: str | None = None
    ) -> AsyncIterator[Selection]:
        """Hold the version a request runs on (its model's route picks it unless named).

        A version that is in the repository but not loaded is loaded first, within the
        request deadline.

        Raises:
            ServiceUnavailableError: not ready.
            ModelNotFoundError, ModelLoadError, ModelMemoryError: the version asked for.
            ServiceUnavailableError: also when an on-demand load outlasts the request
                deadline (it goes on in the background).
        """
        self.check_admission()
        timeout = self.admission.request_timeout_s
        async with contextlib.AsyncExitStack() as stack:
            try:
                selection = await stack.enter_async_context(
                    self._registry.lease(model, version, load_timeout_s=timeout)
                )
            except TimeoutError as e:
                # The load goes on; a job hands itself back and a client retries (503 with
                # Retry-After), rather than either failing for good.
                self.record_shed("model_loading")
                raise ServiceUnavailableError(
                    f"the model version asked for is still loading after {timeout:g} s "
                    "(VERACITY_REQUEST_TIMEOUT_S); retry shortly",
                    retry_after_s=5,
                ) from e
            yield selection

    def shadow(self, shadow: ModelRunner, work: Callable[[ModelRunner], Awaitable[None]]) -> None:
        """Run ``work`` on the shadow version in the background, if there is room.

        Shadow scores are optional: one is dropped (and counted) rather than ever taking
        the last quarter of the admission queue or delaying an answer.
        """
        if self._closed or not self.admission.has_room:
            self._count_shadow(shadow, "dropped")
            return

        async def run() -> None:
            shadow.acquire()
            try:
                await work(shadow)
            except Exception as e:  # a shadow never affects the primary's answer
                self._count_shadow(shadow, "dropped")
                logger.warning(
                    "shadow score dropped",
                    extra={
                        "model": shadow.name,
                        "model_version": shadow.version,
                        "error": getattr(e, "message", None) or repr(e)[:200],
                    },
                )
            finally:
                shadow.release()

        task = asyncio.create_task(run(), name="veracity-shadow")
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    def compare_shadow(self, shadow: ModelRunner, *, agree: bool) -> None:
        """Count whether a shadow's verdict agreed with the serving version's."""
        self._count_shadow(shadow, "agree" if agree else "disagree")
        if self._metrics is not None:
            self._metrics.version_requests.labels(shadow.name, shadow.version, "shadow").inc()

    def _count_shadow(self, shadow: ModelRunner, outcome: str) -> None:
        self._shadow_outcomes[(shadow.name, shadow.version)][outcome] += 1
        if self._metrics is not None:
            self._metrics.shadow_agreement.labels(shadow.name, shadow.version, outcome).inc()

    async def wait_shadows(self) -> None:
        """Wait for the shadow scores under way (tests)."""
        while self._shadows:
            await asyncio.gather(*self._shadows, return_exceptions=True)
