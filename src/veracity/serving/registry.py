"""The registry: which versions are loaded, which one answers, and the memory they hold.

It owns one runner per loaded version and one route per model (see traffic.py). Lifecycle
changes (load, unload, promote, rollback, traffic) run one at a time under a lock, so two
admins racing cannot leave a route pointing at an unloaded version. A version is loaded
and warmed up completely before any route points at it; switching a route is one
assignment on the event loop, so a request sees either the old version or the new one,
and a request holds a lease on the runner it started on, so the old version finishes it.
A failed load changes nothing, and is remembered (failures.py): asking again for the same
files within a cool-down answers the recorded failure without reading the weights again.
The weights' hash is checked before the lock is taken, so a corrupt version never holds up
other lifecycle changes while it is read.

At start-up an unpinned default model serves its newest version that loads: a corrupt
newest version is reported (GET /models, the log, ``veracity_model_lifecycle_total``) and
the one before it serves. A pinned version (``VERACITY_DEFAULT_MODEL=NAME:VERSION``) serves
or start-up fails: the operator asked for that one.

Loaded versions share a memory budget. Before a load, least recently used versions are
unloaded until the new one fits; a version that traffic reaches (a route's serving, canary
or shadow version of the default model) or that has requests on it is never chosen. A
request naming a version that is in the repository but not loaded loads it on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import NoReturn

from veracity.checkpoint import verify_sha256
from veracity.errors import (
    CheckpointError,
    ConfigurationError,
    ModelConflictError,
    ModelLoadError,
    ModelMemoryError,
    ModelNotFoundError,
    ModelNotLoadedError,
    ServiceUnavailableError,
)
from veracity.metrics import ServiceMetrics
from veracity.repository.layout import (
    ModelRepository,
    ModelVersion,
    Problem,
    newest,
    newest_first,
    version_key,
)
from veracity.serving.catalog import (
    CanaryShare,
    CheckpointFacts,
    ModelState,
    VersionState,
    VersionStateName,
)
from veracity.serving.failures import LoadFailures
from veracity.serving.runner import ModelRunner
from veracity.serving.traffic import Role, Route
from veracity.settings import RegistryOptions

logger = logging.getLogger("veracity.registry")

Key = tuple[str, str]

FAILED_LOAD_COOLDOWN_S = 60.0


@dataclass(frozen=True)
class Selection:
    """The runner a request runs on, its role, and the shadow that scores it too."""

    runner: ModelRunner
    role: Role
    shadow: ModelRunner | None = None


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


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
        self.failures = LoadFailures(failed_load_cooldown_s)
        self._load_on_demand = options.load_on_demand
        self._make_runner = make_runner
        self.budget_bytes = options.memory_budget_bytes
        self._default_setting = options.default_model
        self._drain_s = drain_s
        self._metrics = metrics
        self.versions: dict[Key, ModelVersion] = {}
        self.problems: dict[Key, Problem] = {}
        self.runners: dict[Key, ModelRunner] = {}
        self.routes: dict[str, Route] = {}
        self.default_model = ""
        self._lock = asyncio.Lock()
        self._loads: dict[Key, asyncio.Task[ModelRunner]] = {}
        if metrics is not None:
            metrics.model_memory_budget.set(self.budget_bytes)

    @property
    def load_on_demand(self) -> bool:
        """Whether a request may load a version that is not loaded (else only admins)."""
        return self._load_on_demand

    # -- the repository -------------------------------------------------------------------

    async def start(self) -> None:
        """Scan the repository, route every model to its version, load the default one.

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
        if pinned:
            self._version(name, pinned)
            self.routes[name].serving = pinned
            await self.ensure_loaded((name, pinned))
            return
        await self._start_newest_that_loads(name)

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
            route.serving = version
            if failed:
                self._count("fallback", "ok")
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
        await self._check_weights(key)
        async with self._lock:
            return await self._load(key)

    async def _find(self, key: Key) -> ModelVersion:
        """The version on disk, unless it failed to load recently and has not changed."""
        try:
            version = await asyncio.to_thread(self.repository.find, *key)
        except CheckpointError as e:
            self._count("load", "failed")
            raise ModelLoadError(
                f"{key[0]}/{key[1]} cannot be loaded; what served before still does: "
                + self.repository.public(e.message)
            ) from e
        recent = self.failures.recent(version)
        if recent is not None:
            failure, age = recent
            self._count("load", "failed")
            raise ModelLoadError(
                f"{failure.reason} (a load {age:.0f} s ago failed and its files have not "
                f"changed since; it is tried again after {self.failures.cooldown_s:g} s, or "
                "at once when they change)"
            )
        return version

    def _failed(self, version: ModelVersion, e: CheckpointError | ConfigurationError) -> NoReturn:
        self._count("load", "failed")
        logger.error(
            "model version failed to load",
            extra={"model": version.name, "model_version": version.version, "reason": e.message},
        )
        reason = (
            f"{version.name}/{version.version} failed to load; what served before still does: "
            + self.repository.public(e.message)
        )
        self.failures.record(version, reason)
        raise ModelLoadError(reason) from e

    async def _check_weights(self, key: Key) -> None:
        """Verify the weights' hash outside the lock (the load checks it again), so a
        corrupt version is refused without holding up other lifecycle changes."""
        runner = self.runners.get(key)
        if runner is not None and runner.loaded:
            return
        version = await self._find(key)
        try:
            await asyncio.to_thread(
                verify_sha256,
                version.checkpoint,
                version.metadata.weights_sha256,
                what="weights file",
                otherwise="the weights were modified or the metadata belongs to another checkpoint",
            )
        except OSError as e:
            self._failed(version, CheckpointError(f"weights file unreadable: {e}"))
        except CheckpointError as e:
            self._failed(version, e)

    async def _load(self, key: Key) -> ModelRunner:
        """Load ``key`` under the lock; nothing changes if it fails."""
        existing = self.runners.get(key)
        if existing is not None and existing.loaded:
            return existing
        version = await self._find(key)
        self.versions[key] = version
        self.problems.pop(key, None)
        self.routes.setdefault(key[0], Route(serving=key[1]))
        runner = self._make_runner(version)
        await self._make_room(runner.estimated_bytes(), key)
        try:
            await runner.load()
        except (CheckpointError, ConfigurationError) as e:
            self._failed(version, e)
        self.failures.forget(key)
        runner.start()
        self.runners[key] = runner
        self._count("load", "ok")
        if self._metrics is not None:
            self._metrics.model_memory.labels(*key).set(runner.memory_bytes)
            meta = runner.metadata
            self._metrics.model_info.labels(
                key[0], key[1], meta.architecture, meta.weights_sha256
            ).set(1)
        return runner

    def used_bytes(self) -> int:
        return sum(r.memory_bytes for r in self.runners.values())

    def _pinned(self, key: Key) -> bool:
        """The default model's serving, canary or shadow version: always loaded. (Other
        models' versions load on demand, so they may be unloaded.)"""
        route = self.routes.get(key[0])
        return key[0] == self.default_model and route is not None and route.uses(key[1])

    def _in_use(self, key: Key) -> bool:
        """Pinned, or requests are on it: never evicted."""
        return self._pinned(key) or self.runners[key].leases > 0

    async def _make_room(self, needed: int, key: Key) -> None:
        if needed > self.budget_bytes:
            self._count("load", "failed")
            raise ModelMemoryError(
                f"{key[0]}/{key[1]} needs about {_mb(needed)}, more than the whole model "
                f"memory budget of {_mb(self.budget_bytes)} (VERACITY_MODEL_MEMORY_MB)"
            )
        candidates = sorted(
            (r for k, r in self.runners.items() if not self._in_use(k)),
            key=lambda r: r.last_used,
        )
        free = self.budget_bytes - self.used_bytes()
        victims = []
        for runner in candidates:
            if free >= needed:
                break
            victims.append(runner)
            free += runner.memory_bytes
        if free < needed:
            self._count("load", "failed")
            raise ModelMemoryError(
                f"{key[0]}/{key[1]} needs about {_mb(needed)} but only {_mb(free)} of the "
                f"{_mb(self.budget_bytes)} budget can be freed: the other loaded versions "
                "serve traffic or have requests on them. Unload one, or raise "
                "VERACITY_MODEL_MEMORY_MB"
            )
        for runner in victims:
            logger.info(
                "least recently used version unloaded to make room",
                extra={"model": runner.name, "model_version": runner.version, "for": "/".join(key)},
            )
            await self._unload(runner, "evict")

    async def _unload(self, runner: ModelRunner, action: str) -> None:
        key = (runner.name, runner.version)
        self.runners.pop(key, None)
        if self._metrics is not None:
            self._metrics.model_memory.remove(*key)
            with contextlib.suppress(KeyError, ServiceUnavailableError):
                meta = runner.metadata
                self._metrics.model_info.remove(*key, meta.architecture, meta.weights_sha256)
        await runner.stop(self._drain_s)
        self._count(action, "ok")

    async def load(self, name: str, version: str) -> ModelRunner:
        """Load and warm up a version without routing traffic to it (admin)."""
        return await self.ensure_loaded((name, version))

    async def unload(self, name: str, version: str) -> None:
        """Unload a version (admin); requests on it finish first. Another model's version
        loads again on its next request.

        Raises:
            ModelNotFoundError: not loaded.
            ModelConflictError: the default model's traffic reaches it.
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
            await self._unload(runner, "unload")

    async def promote(self, name: str, version: str) -> Route:
        """Make ``version`` the serving one, after loading and warming it up (admin). A
        canary ends with the switch: its share was set against the version replaced.
        """
        try:
            await self._check_weights((name, version))
        except Exception:
            self._count("promote", "failed")
            raise
        async with self._lock:
            try:
                await self._load((name, version))
            except Exception:
                self._count("promote", "failed")
                raise
            route = self.routes[name]
            before, canary = route.serving, route.canary
            route.promote(version)
            self._count("promote", "ok")
            logger.warning(
                "model version promoted",
                extra={
                    "model": name,
                    "model_version": version,
                    "previous": before,
                    "canary_ended": canary if canary != route.canary else None,
                },
            )
            return route

    async def rollback(self, name: str) -> Route:
        """Serve the previous version again (admin); the current one becomes previous.

        Raises:
            ModelConflictError: nothing was promoted over a previous version.
        """
        async with self._lock:
            route = self._route(name)
            if route.previous is None:
                self._count("rollback", "failed")
                raise ModelConflictError(
                    f"model {name!r} has no previous version to roll back to; it has served "
                    f"{route.serving} since start-up"
                )
            target, current, canary = route.previous, route.serving, route.canary
            try:
                await self._load((name, target))
            except Exception:
                self._count("rollback", "failed")
                raise
            route.promote(target)
            self._count("rollback", "ok")
            logger.warning(
                "model version rolled back",
                extra={
                    "model": name,
                    "model_version": target,
                    "from_version": current,
                    "canary_ended": canary,
                },
            )
            return route

    async def set_traffic(
        self,
        name: str,
        *,
        canary: str | None,
        canary_percent: float,
        shadow: str | None,
    ) -> Route:
        """Send a share of traffic to a canary and/or score it in a shadow (admin)."""
        async with self._lock:
            route = self._route(name)
            for version in (canary, shadow):
                if version is not None:
                    if version == route.serving:
                        raise ModelConflictError(f"{name}/{version} is already the serving version")
                    try:
                        await self._load((name, version))
                    except Exception:
                        self._count("traffic", "failed")
                        raise
            route.set_canary(canary, canary_percent)
            route.shadow = shadow
            self._count("traffic", "ok")
            logger.warning(
                "model traffic changed",
                extra={
                    "model": name,
                    "canary": canary,
                    "canary_percent": canary_percent,
                    "shadow": shadow,
                },
            )
            return route

    def _route(self, name: str) -> Route:
        route = self.routes.get(name)
        if route is None:
            raise ModelNotFoundError(
                f"no model named {name!r}; GET /models lists the models this service has"
            )
        return route

    def _count(self, action: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.model_lifecycle.labels(action, outcome).inc()

    async def stop(self) -> None:
        for task in list(self._loads.values()):
            task.cancel()
        for runner in list(self.runners.values()):
            await runner.stop(0)
        self.runners.clear()

    # -- describing -------------------------------------------------------------------------

    def describe(self) -> tuple[ModelState, ...]:
        """Every model with its versions, their state and their roles (GET /models)."""
        names = sorted({*self.routes, *(k[0] for k in self.problems)})
        return tuple(self._describe_model(name) for name in names)

    def _describe_model(self, name: str) -> ModelState:
        route = self.routes.get(name)
        keys = sorted(
            {k for k in (*self.versions, *self.problems) if k[0] == name},
            key=lambda k: version_key(k[1]),
        )
        return ModelState(
            name=name,
            default=name == self.default_model,
            serving_version=route.serving if route else None,
            previous_version=route.previous if route else None,
            canary=(
                CanaryShare(route.canary, route.canary_percent) if route and route.canary else None
            ),
            shadow_version=route.shadow if route else None,
            versions=tuple(self._describe_version(key, route) for key in keys),
        )

    def _describe_version(self, key: Key, route: Route | None) -> VersionState:
        problem = self.problems.get(key)
        if problem is not None:
            reason = self.repository.public(problem.reason)
            return VersionState(key[1], "invalid", reason)
        version = self.versions[key]
        runner = self.runners.get(key)
        failure = None
        state: VersionStateName
        if runner is not None and runner.loaded:
            state = "loaded"
        elif key in self._loads:
            state = "loading"
        else:
            failure = self.failures.current(version)
            state = "failed" if failure is not None else "available"
        meta = version.metadata
        return VersionState(
            version=key[1],
            state=state,
            reason=failure.reason if failure is not None else None,
            serving=route is not None and route.serving == key[1],
            memory_bytes=runner.memory_bytes if runner is not None else None,
            size_bytes=version.size_bytes,
            checkpoint=CheckpointFacts(
                architecture=meta.architecture,
                weights_sha256=meta.weights_sha256,
                created_at=meta.created_at.isoformat(),
                calibration_version=meta.calibration.version if meta.calibration else None,
                checkpoint_name=meta.model_name,
                checkpoint_version=meta.model_version,
                metrics=meta.metrics,
            ),
        )
