"""The versions in memory: loading them, the memory budget they share, and unloading.

A load finds the version on disk, checks its weights' hash, makes room, then loads and
warms up a runner; a failed load changes nothing and is remembered (failures.py): asking
again for the same files within a cool-down answers the recorded failure without reading
the weights again. The hash can be checked before the registry's lock is taken
(``check_weights``), so a corrupt version never holds up other lifecycle changes while it
is read.

Loaded versions share a memory budget. Before a load, least recently used versions are
unloaded until the new one fits; a version that traffic reaches (``pinned``, which the
registry answers from its routes) or that has requests on it is never chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import NoReturn

from veracity.checkpoint import verify_sha256
from veracity.errors import (
    CheckpointError,
    ConfigurationError,
    ModelLoadError,
    ModelMemoryError,
    ServiceUnavailableError,
)
from veracity.metrics import ServiceMetrics
from veracity.repository.layout import ModelRepository, ModelVersion
from veracity.serving.failures import LoadFailures
from veracity.serving.runner import ModelRunner

# The registry's log: these lines are its lifecycle as operators read it.
logger = logging.getLogger("veracity.registry")

Key = tuple[str, str]

FAILED_LOAD_COOLDOWN_S = 60.0


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


class LoadedVersions:
    """One runner per loaded version, within ``budget_bytes``."""

    def __init__(
        self,
        repository: ModelRepository,
        *,
        make_runner: Callable[[ModelVersion], ModelRunner],
        budget_bytes: int,
        pinned: Callable[[Key], bool],
        drain_s: float,
        metrics: ServiceMetrics | None = None,
        failed_load_cooldown_s: float = FAILED_LOAD_COOLDOWN_S,
    ) -> None:
        self.repository = repository
        self.budget_bytes = budget_bytes
        self.failures = LoadFailures(failed_load_cooldown_s)
        self.runners: dict[Key, ModelRunner] = {}
        self._make_runner = make_runner
        self._pinned = pinned
        self._drain_s = drain_s
        self._metrics = metrics
        if metrics is not None:
            metrics.model_memory_budget.set(budget_bytes)

    def loaded(self, key: Key) -> ModelRunner | None:
        runner = self.runners.get(key)
        return runner if runner is not None and runner.loaded else None

    def used_bytes(self) -> int:
        return sum(r.memory_bytes for r in self.runners.values())

    def count(self, action: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.model_lifecycle.labels(action, outcome).inc()

    # -- loading ----------------------------------------------------------------------------

    async def find(self, key: Key) -> ModelVersion:
        """The version on disk, unless it failed to load recently and has not changed."""
        try:
            version = await asyncio.to_thread(self.repository.find, *key)
        except CheckpointError as e:
            self.count("load", "failed")
            raise ModelLoadError(
                f"{key[0]}/{key[1]} cannot be loaded; what served before still does: "
                + self.repository.public(e.message)
            ) from e
        recent = self.failures.recent(version)
        if recent is not None:
            failure, age = recent
            self.count("load", "failed")
            raise ModelLoadError(
                f"{failure.reason} (a load {age:.0f} s ago failed and its files have not "
                f"changed since; it is tried again after {self.failures.cooldown_s:g} s, or "
                "at once when they change)"
            )
        return version

    def _failed(self, version: ModelVersion, e: CheckpointError | ConfigurationError) -> NoReturn:
        self.count("load", "failed")
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

    async def check_weights(self, key: Key) -> None:
        """Verify the weights' hash (the load checks it again), so a corrupt version is
        refused before the caller takes its lock."""
        if self.loaded(key) is not None:
            return
        version = await self.find(key)
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

    async def load(self, version: ModelVersion) -> ModelRunner:
        """Load and warm up ``version`` (found by ``find``); nothing changes if it fails."""
        key = version.key
        runner = self._make_runner(version)
        await self._make_room(runner.estimated_bytes(), key)
        try:
            await runner.load()
        except (CheckpointError, ConfigurationError) as e:
            self._failed(version, e)
        self.failures.forget(key)
        runner.start()
        self.runners[key] = runner
        self.count("load", "ok")
        if self._metrics is not None:
            self._metrics.model_memory.labels(*key).set(runner.memory_bytes)
            meta = runner.metadata
            self._metrics.model_info.labels(
                key[0], key[1], meta.architecture, meta.weights_sha256
            ).set(1)
        return runner

    # -- the budget -------------------------------------------------------------------------

    def _in_use(self, key: Key) -> bool:
        """Pinned, or requests are on it: never evicted."""
        return self._pinned(key) or self.runners[key].leases > 0

    async def _make_room(self, needed: int, key: Key) -> None:
        if needed > self.budget_bytes:
            self.count("load", "failed")
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
            self.count("load", "failed")
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
            await self.unload(runner, "evict")

    # -- unloading --------------------------------------------------------------------------

    async def unload(self, runner: ModelRunner, action: str) -> None:
        """Take ``runner`` out, wait for the requests on it, and release it."""
        key = (runner.name, runner.version)
        self.runners.pop(key, None)
        if self._metrics is not None:
            self._metrics.model_memory.remove(*key)
            with contextlib.suppress(KeyError, ServiceUnavailableError):
                meta = runner.metadata
                self._metrics.model_info.remove(*key, meta.architecture, meta.weights_sha256)
        await runner.stop(self._drain_s)
        self.count(action, "ok")

    async def stop(self) -> None:
        """Release every version at once (the service has drained)."""
        for runner in list(self.runners.values()):
            await runner.stop(0)
        self.runners.clear()
