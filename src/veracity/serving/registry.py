"""The registry: which versions are loaded and which one answers each request.

It owns one route per model (see traffic.py) and the loaded versions (loaded.py: loading,
the failed-load cool-down, the memory budget). It applies a desired state (desired.py; the
lifecycle decides which, lifecycle.py) in two steps: ``prepare`` loads and warms up every
version the state needs, each reserved from eviction as it loads, and ``adopt`` switches
the routes under the lock every load and eviction takes, checking first that the reserved
versions are still loaded. So no route ever points at a version that is not loaded;
switching a route is one assignment on the event loop, so a request sees either the old
version or the new one, and a request holds a lease on the runner it started on, so the
old version finishes it. A failed load changes nothing.

At start-up an unpinned default model serves its newest version that loads: a corrupt
newest version is reported (GET /models, the log, ``veracity_model_lifecycle_total``) and
the one before it serves. A pinned version (``VERACITY_DEFAULT_MODEL=NAME:VERSION``) serves
or start-up fails: the operator asked for that one. A request naming a version that is in
the repository but not loaded loads it on demand (unless turned off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from veracity.errors import (
    CheckpointError,
    ConfigurationError,
    ModelConflictError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotLoadedError,
    VeracityError,
)
from veracity.metrics import ServiceMetrics
from veracity.repository.layout import (
    ModelRepository,
    ModelVersion,
    Problem,
    newest,
    newest_first,
)
from veracity.serving.desired import DesiredState
from veracity.serving.failures import LoadFailure
from veracity.serving.loaded import FAILED_LOAD_COOLDOWN_S, LoadedVersions
from veracity.serving.runner import ModelRunner
from veracity.serving.traffic import Role, Route, RouteSpec
from veracity.settings import RegistryOptions

logger = logging.getLogger("veracity.registry")

Key = tuple[str, str]


@dataclass(frozen=True)
class Selection:
    """The runner a request runs on, its role, and the shadow that scores it too."""

    runner: ModelRunner
    role: Role
    shadow: ModelRunner | None = None


class ModelRegistry:
    def __init__(
        self,
        repository: ModelRepository,
        *,
        make_runner: Callable[[ModelVersion], ModelRunner],
        options: RegistryOptions,
        drain_s: float = 20.0,
        metrics: ServiceMetrics | None = None,
        failed_load_cooldown_s: float = FAILED_LOAD_COOLDOWN_S,
    ) -> None:
        self.repository = repository
        self._loaded = LoadedVersions(
            repository,
            make_runner=make_runner,
            budget_bytes=options.memory_budget_bytes,
            pinned=self._pinned,
            drain_s=drain_s,
            metrics=metrics,
            failed_load_cooldown_s=failed_load_cooldown_s,
        )
        self._load_on_demand = options.load_on_demand
        self._default_setting = options.default_model
        self._metrics = metrics
        self.versions: dict[Key, ModelVersion] = {}
        self.problems: dict[Key, Problem] = {}
        self.routes: dict[str, Route] = {}
        self.default_model = ""
        # Versions an admin asked to keep loaded (by model), and the desired state's
        # revision this replica applied (0: its own start-up state).
        self.warm: dict[str, frozenset[str]] = {}
        self.revision = 0
        # Versions a desired state being applied needs, loaded by ``prepare``: kept from
        # eviction until ``adopt`` routes to them (or ``release`` gives the change up).
        self._reserved: set[Key] = set()
        self._lock = asyncio.Lock()
        self._loads: dict[Key, asyncio.Task[ModelRunner]] = {}

    @property
    def runners(self) -> dict[Key, ModelRunner]:
        """The loaded versions' runners."""
        return self._loaded.runners

    @property
    def budget_bytes(self) -> int:
        return self._loaded.budget_bytes

    @property
    def load_on_demand(self) -> bool:
        """Whether a request may load a version that is not loaded (else only admins)."""
        return self._load_on_demand

    # -- the repository -------------------------------------------------------------------

    async def start(self, desired: DesiredState | None = None) -> None:
        """Scan the repository, route every model to its version, load the default one.

        The default model starts on its serving version in ``desired`` (the shared desired
        state, which wins over a pin in the settings: an admin chose it later); when that
        does not load here, start-up goes on as if there were none, and the caller reports
        the failure.

        Raises:
            CheckpointError, ConfigurationError: no usable default model.
            ModelLoadError, ModelMemoryError: the default version cannot be served.
        """
        await self.rescan()
        if not self.routes:
            problems = "; ".join(
                f"{p.name}/{p.version}: {p.reason}" for p in self.problems.values()
            )
            raise CheckpointError(
                f"no usable model in {self.repository.describe()}"
                + (f" ({problems})" if problems else "")
            )
        name, _, pinned = (self._default_setting or "").partition(":")
        if not name:
            if len(self.routes) > 1:
                raise ConfigurationError(
                    f"the repository holds several models ({', '.join(sorted(self.routes))}); "
                    "choose the default with VERACITY_DEFAULT_MODEL=NAME[:VERSION]"
                )
            name = next(iter(self.routes))
        if name not in self.routes:
            raise ConfigurationError(
                f"VERACITY_DEFAULT_MODEL names {name!r}, which is not in the repository "
                f"(models: {', '.join(sorted(self.routes))})"
            )
        self.default_model = name
        spec = desired.route(name) if desired is not None else None
        if spec is not None and await self._start_preferred(name, spec.serving, pinned):
            return
        if pinned:
            self._version(name, pinned)
            self.routes[name].adopt(RouteSpec(serving=pinned))
            await self.ensure_loaded((name, pinned))
            return
        await self._start_newest_that_loads(name)

    async def _start_preferred(self, name: str, version: str, pinned: str) -> bool:
        try:
            self._version(name, version)
            await self.ensure_loaded((name, version))
        except VeracityError as e:
            logger.error(
                "the desired version does not load here; starting on another",
                extra={"model": name, "model_version": version, "error": e.message},
            )
            return False
        if pinned and pinned != version:
            logger.warning(
                "the shared desired state overrides VERACITY_DEFAULT_MODEL's version",
                extra={"model": name, "model_version": version, "pinned": pinned},
            )
        self.routes[name].adopt(RouteSpec(serving=version))
        return True

    async def _start_newest_that_loads(self, name: str) -> None:
        """Serve the newest version of ``name`` that loads; report the ones that do not."""
        route = self.routes[name]
        failed: list[str] = []
        for version in newest_first([v for n, v in self.versions if n == name]):
            try:
                await self.ensure_loaded((name, version))
            except ModelLoadError as e:
                failed.append(f"{version}: {e.message}")
                continue
            route.adopt(RouteSpec(serving=version))
            if failed:
                self.count("fallback", "ok")
                logger.error(
                    "newer versions failed to load; an older version serves",
                    extra={"model": name, "model_version": version, "failed": failed},
                )
            return
        raise ModelLoadError(f"no version of model {name!r} loads: {'; '.join(failed)}")

    async def rescan(self) -> None:
        """Read the repository again: new versions become loadable, new models routable."""
        found, problems = await asyncio.to_thread(self.repository.scan)
        # A loaded version whose folder was removed keeps serving (and being listed) until
        # it is unloaded: its weights are in memory, verified when they were loaded.
        loaded = {key: runner.model for key, runner in self.runners.items()}
        self.versions = loaded | {v.key: v for v in found}
        self.problems = {(p.name, p.version): p for p in problems}
        by_model: dict[str, list[str]] = {}
        for name, version in self.versions:
            by_model.setdefault(name, []).append(version)
        for name, versions in by_model.items():
            self.routes.setdefault(name, Route(serving=newest(versions)))

    def require_known(self, name: str, version: str) -> None:
        """Raise ModelNotFoundError unless the repository has the version's folder (usable
        or not: loading an unusable one answers why, as model_load_failed)."""
        self._route(name)
        if (name, version) not in self.versions and (name, version) not in self.problems:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r}; GET /models lists its versions"
            )

    def route(self, name: str) -> Route:
        """The model's route (ModelNotFoundError if there is no such model)."""
        return self._route(name)

    def _version(self, name: str, version: str) -> ModelVersion:
        if name not in self.routes:
            raise ModelNotFoundError(
                f"no model named {name!r}; GET /models lists the models this service has"
            )
        found = self.versions.get((name, version))
        if found is None:
            problem = self.problems.get((name, version))
            raise ModelNotFoundError(
                f"model {name!r} has no usable version {version!r}"
                + (
                    f": {self.repository.public(problem.reason)}"
                    if problem
                    else "; GET /models lists its versions"
                )
            )
        return found

    # -- serving ----------------------------------------------------------------------------

    @property
    def default_runner(self) -> ModelRunner | None:
        route = self.routes.get(self.default_model)
        return None if route is None else self.runners.get((self.default_model, route.serving))

    def check(self, name: str | None, version: str | None) -> None:
        """Raise ModelNotFoundError unless the model (and version) can be asked for."""
        if version is not None:
            self._version(name or self.default_model, version)
        else:
            self._route(name or self.default_model)

    def select(self, name: str | None, version: str | None) -> tuple[Key, Role, Key | None]:
        """The version a request runs on, its role, and the shadow version (if any).

        Raises:
            ModelNotFoundError: an unknown model or version.
        """
        name = name or self.default_model
        if version is not None:
            self._version(name, version)
            return (name, version), "pinned", None
        route = self._route(name)
        chosen, role = route.choose()
        shadow = (name, route.shadow) if role == "primary" and route.shadow else None
        return (name, chosen), role, shadow

    def versions_of(self, name: str) -> list[str]:
        """The versions of ``name`` that can be asked for (in text order)."""
        return sorted(v for n, v in self.versions if n == name)

    def serving_version(self, name: str) -> str:
        """The version that answers requests naming none (ModelNotFoundError if none)."""
        return self._route(name).serving

    def is_loaded(self, key: Key) -> bool:
        runner = self.runners.get(key)
        return runner is not None and runner.loaded

    def loading(self, key: Key) -> bool:
        """Whether a load of ``key`` is under way."""
        return key in self._loads

    def failure(self, version: ModelVersion) -> LoadFailure | None:
        """The failure recorded for the version's files as they are now, if any."""
        return self._loaded.failures.current(version)

    def check_runnable(self, name: str | None, version: str | None) -> None:
        """Raise now what ``lease`` would raise for this choice, without loading: for work
        queued to run later (a job), which must not wait on a load nobody will make.

        Raises:
            ModelNotFoundError: an unknown model or version.
            ModelNotLoadedError: not loaded, and on-demand loads are off.
        """
        self._check_loadable(self.select(name, version)[0])

    def _check_loadable(self, key: Key) -> None:
        runner = self.runners.get(key)
        if (runner is None or not runner.loaded) and not self._load_on_demand:
            raise ModelNotLoadedError(
                f"{key[0]}/{key[1]} is not loaded, and this deployment loads versions only "
                "when an admin asks (VERACITY_MODEL_LOAD_ON_DEMAND=false); ask for a loaded "
                "version (GET /models), or retry once it is loaded",
                retry_after_s=60,
            )

    @contextlib.asynccontextmanager
    async def lease(
        self, name: str | None, version: str | None, *, load_timeout_s: float
    ) -> AsyncIterator[Selection]:
        """Hold the chosen version for one request (loading it first if it is not).

        Raises:
            ModelNotFoundError, ModelLoadError, ModelMemoryError: as ``load``.
            ModelNotLoadedError: not loaded, and on-demand loads are off.
            TimeoutError: an on-demand load took longer than ``load_timeout_s`` (the load
                goes on; a later request finds the version loaded).
        """
        key, role, shadow_key = self.select(name, version)
        self._check_loadable(key)
        runner = self.runners.get(key)
        async with asyncio.timeout(load_timeout_s):
            # A version loaded for this request can, in rare races, be evicted by another
            # load before this task resumes: load it again rather than run on a stopped one.
            while runner is None or not runner.loaded:
                runner = await self.ensure_loaded(key)
        shadow = self.runners.get(shadow_key) if shadow_key is not None else None
        runner.acquire()
        if self._metrics is not None:
            self._metrics.version_requests.labels(runner.name, runner.version, role).inc()
        try:
            yield Selection(runner, role, shadow if shadow is not None and shadow.loaded else None)
        finally:
            runner.release()

    # -- lifecycle --------------------------------------------------------------------------

    async def ensure_loaded(self, key: Key) -> ModelRunner:
        """The runner of ``key``, loading it (once, however many callers wait) if needed."""
        runner = self.runners.get(key)
        if runner is not None and runner.loaded:
            return runner
        task = self._loads.get(key)
        if task is None:
            task = asyncio.create_task(self._load_serialised(key), name=f"load-{key[0]}-{key[1]}")
            self._loads[key] = task
            task.add_done_callback(lambda _: self._loads.pop(key, None))
        # Shielded: a caller giving up (a request's deadline) does not abandon the load.
        return await asyncio.shield(task)

    async def _load_serialised(self, key: Key) -> ModelRunner:
        await self._loaded.check_weights(key)
        async with self._lock:
            return await self._load(key)

    async def _load(self, key: Key) -> ModelRunner:
        """Load ``key`` under the lock; nothing changes if it fails."""
        existing = self._loaded.loaded(key)
        if existing is not None:
            return existing
        version = await self._loaded.find(key)
        self.versions[key] = version
        self.problems.pop(key, None)
        self.routes.setdefault(key[0], Route(serving=key[1]))
        return await self._loaded.load(version)

    def used_bytes(self) -> int:
        return self._loaded.used_bytes()

    def _pinned(self, key: Key) -> bool:
        """The default model's serving, canary or shadow version, and every version kept
        warm: always loaded. (Other models' versions load on demand, so they may be
        unloaded.)"""
        if key[1] in self.warm.get(key[0], frozenset()) or key in self._reserved:
            return True
        route = self.routes.get(key[0])
        return key[0] == self.default_model and route is not None and route.uses(key[1])

    async def unload(self, name: str, version: str) -> None:
        """Unload a version here (requests on it finish first), unless traffic reaches it.

        Raises:
            ModelNotFoundError: not loaded.
            ModelConflictError: the default model's traffic reaches it, or it is kept warm.
        """
        async with self._lock:
            runner = self.runners.get((name, version))
            if runner is None:
                raise ModelNotFoundError(f"{name}/{version} is not loaded")
            if self._pinned((name, version)):
                raise ModelConflictError(
                    f"{name}/{version} takes the default model's traffic (serving, canary "
                    "or shadow); promote another version or clear the canary and shadow first"
                )
            await self._loaded.unload(runner, "unload")

    # -- the desired state ------------------------------------------------------------------

    def desired(self) -> DesiredState:
        """What this replica serves, as a desired state at the revision it applied."""
        return DesiredState(
            self.revision, {name: route.spec for name, route in self.routes.items()}, self.warm
        )

    async def prepare(self, desired: DesiredState) -> None:
        """Load and warm up every version ``desired`` needs, switching nothing: the default
        model's serving, canary and shadow versions, every version newly routed to another
        model (the ones already routed load on their next request if evicted), and every
        warm one.

        Raises:
            ModelNotFoundError: a model or version this replica's repository does not have.
            ModelLoadError, ModelMemoryError: one does not load (loaded ones stay, unrouted).
        """
        # A model this replica's repository does not have is not this replica's to serve
        # (a model removed from the repository, say): it never blocks the others.
        for name in sorted({*desired.routes, *desired.warm} & set(self.routes)):
            needed = desired.needs(name)
            if name != self.default_model:
                warm, current = desired.warm.get(name, frozenset()), self.routes[name]
                needed = frozenset(v for v in needed if v in warm or not current.uses(v))
            for version in sorted(needed):
                self.require_known(name, version)
                # Reserved before it loads: loading the next one (or a request's on-demand
                # load) must not evict it before ``adopt`` routes to it.
                self._reserved.add((name, version))
                await self.ensure_loaded((name, version))

    def release(self) -> None:
        """Give up the desired state ``prepare`` loaded for (its versions may be evicted)."""
        self._reserved.clear()

    async def adopt(self, desired: DesiredState) -> None:
        """Route by ``desired`` from the next request on (``prepare`` loaded what it needs).

        Versions kept warm before and not now are unloaded, unless traffic reaches them.

        Raises:
            ModelLoadError, ModelMemoryError: a version ``prepare`` loaded is gone and does
                not load again; nothing was switched.
        """
        async with self._lock:
            try:
                # Reserved since ``prepare``, so still loaded; checked all the same, under the
                # lock that every load and eviction takes, so that no route ever points at a
                # version that is not loaded.
                for key in sorted(self._reserved):
                    await self._load(key)
                for name, spec in desired.routes.items():
                    route = self.routes.get(name)
                    if route is not None:
                        route.adopt(spec)
            finally:
                self._reserved.clear()
            dropped = {
                (name, version)
                for name, versions in self.warm.items()
                for version in versions - desired.warm.get(name, frozenset())
            }
            self.warm = dict(desired.warm)
            self.revision = desired.revision
            for key in sorted(dropped):
                runner = self.runners.get(key)
                if runner is not None and not self._pinned(key):
                    await self._loaded.unload(runner, "unload")

    def count(self, action: str, outcome: str) -> None:
        """Count a lifecycle change (``veracity_model_lifecycle_total``)."""
        self._loaded.count(action, outcome)

    def _route(self, name: str) -> Route:
        route = self.routes.get(name)
        if route is None:
            raise ModelNotFoundError(
                f"no model named {name!r}; GET /models lists the models this service has"
            )
        return route

    async def stop(self) -> None:
        for task in list(self._loads.values()):
            task.cancel()
        await self._loaded.stop()
