"""The model lifecycle shared by every replica: admin changes become revisions of one desired
state in the results store, and every replica applies the latest.

An admin change (promote, rollback, traffic, load, unload) on any replica is made against
the latest revision: checked, its versions loaded and warmed up here, then stored as the
next revision (compare-and-set: of two changes made against the same revision one is
stored, the other answers 409 ``revision_conflict`` having changed nothing), then adopted
here. Every replica reads the latest revision every ``sync_s`` seconds, and at once on a
PostgreSQL notification; it loads and warms up what the revision needs before switching,
and reports the revision it applied. A revision that does not load on a replica is
reported with the reason, and that replica keeps serving what it applied last; it tries
again at each read (a failed load's cool-down keeps that cheap).

Without a results store the desired state lives in this process only, numbered the same
way. With SQLite it is stored, so it outlives a restart, but only one process serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from veracity.errors import (
    ModelConflictError,
    ModelNotFoundError,
    RevisionConflictError,
    StoreUnavailableError,
    VeracityError,
)
from veracity.serving.catalog import Fleet, ReplicaState, ReplicaStateName
from veracity.serving.desired import DesiredState
from veracity.serving.registry import ModelRegistry
from veracity.serving.traffic import RouteSpec
from veracity.settings import RegistryOptions
from veracity.store.revisions import ReplicaReport, RevisionLog

logger = logging.getLogger("veracity.registry")

Plan = Callable[[DesiredState], DesiredState]


@dataclass(frozen=True)
class Change:
    """Who asks for an admin change, and the revision they read (If-Match), if any."""

    key_id: str | None = None
    expected_revision: int | None = None


NO_CONDITIONS = Change()


class _HereOnly(Exception):  # noqa: N818 (a signal between two methods, never raised out)
    """An unload of a version no revision keeps warm: this replica's own affair."""


class Lifecycle:
    """This replica's side of the shared desired state."""

    def __init__(self, registry: ModelRegistry, options: RegistryOptions) -> None:
        self._registry = registry
        self.replica_id = options.replica_id or "replica"
        self._sync_s = options.sync_s
        self._log: RevisionLog | None = None
        self._lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = datetime.now(UTC)
        # The latest revision that does not apply here, and why (None: all applied).
        self._failure: tuple[int, str] | None = None

    def share(self, log: RevisionLog) -> None:
        """Keep the desired state in the results store, shared with every replica on it."""
        self._log = log

    # -- start, follow, stop ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the registry on the latest revision, then follow the ones after it."""
        # Under the lock: an admin change arriving meanwhile waits for start-up, rather than
        # being overwritten by the start-up choice of version.
        async with self._lock:
            desired = await self._stored()
            await self._registry.start(desired)
            if desired is not None:
                await self._apply(desired)
        if self._log is None:
            return
        await self._report()
        self._wake = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._follow(), name="veracity-model-sync"))
        if self._log.notifies:
            wake = self._wake.set
            self._tasks.append(
                asyncio.create_task(self._log.listen(wake), name="veracity-model-listen")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _follow(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sync_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync()
            except Exception:  # the follower outlives any one failure; the next read retries
                logger.exception("reading the models' desired state failed")

    async def sync(self) -> None:
        """Apply the latest revision if this replica has not, and report (tests call it)."""
        desired = await self._stored()
        if desired is not None and desired.revision > self._registry.revision:
            async with self._lock:
                if desired.revision > self._registry.revision:
                    await self._apply(desired)
        await self._report()

    async def _stored(self) -> DesiredState | None:
        """The latest stored revision (None: none, or the store cannot say right now)."""
        try:
            return await self._latest()
        except StoreUnavailableError:
            return None  # logged by the store; this replica serves what it applied

    async def _latest(self) -> DesiredState | None:
        """The latest stored revision (None: none, or no store).

        Raises:
            StoreUnavailableError: the store cannot say.
        """
        latest = None if self._log is None else await self._log.latest()
        return (
            None if latest is None else DesiredState.from_document(latest.revision, latest.document)
        )

    async def _apply(self, desired: DesiredState) -> None:
        """Load what ``desired`` needs, then switch to it; on failure keep what serves."""
        registry = self._registry
        try:
            # The repository again first: a version copied in for this revision is found.
            await registry.rescan()
            await registry.prepare(desired)
            await registry.adopt(desired)
        except VeracityError as e:
            registry.release()
            reason = registry.repository.public(e.message)
            # Logged once per revision (a retry's reason names the cool-down's age).
            if self._failure is None or self._failure[0] != desired.revision:
                logger.error(
                    "the models' desired state does not apply here; serving the last one",
                    extra={
                        "revision": desired.revision,
                        "applied_revision": registry.revision,
                        "error": reason,
                    },
                )
            self._failure = (desired.revision, reason)
            registry.count("sync", "failed")
            return
        self._failure = None
        registry.count("sync", "ok")
        logger.info(
            "the models' desired state applied",
            extra={"revision": desired.revision, "serving": self._serving()},
        )

    def _serving(self) -> dict[str, str]:
        return {name: route.serving for name, route in sorted(self._registry.routes.items())}

    def _own_report(self) -> ReplicaReport:
        """This replica as it is now, as it reports itself to the others."""
        failure = self._failure
        now = datetime.now(UTC)
        return ReplicaReport(
            replica_id=self.replica_id,
            started_at=self._started_at,
            seen_at=now,
            applied_revision=self._registry.revision,
            failed_revision=failure[0] if failure else None,
            reason=failure[1] if failure else None,
            serving=self._serving(),
        )

    async def _report(self) -> None:
        if self._log is None:
            return
        with contextlib.suppress(StoreUnavailableError):  # reported at the next read
            await self._log.report(self._own_report())

    # -- what GET /models says about the replicas -------------------------------------------

    async def fleet(self) -> Fleet:
        """The latest revision and every replica's state (this one's own, without a store
        or while it is unavailable)."""
        revision = self._registry.revision
        reports: list[ReplicaReport] = []
        if self._log is not None:
            try:
                latest = await self._log.latest()
                reports = await self._log.replicas()
            except StoreUnavailableError:
                pass  # this replica alone, at its own revision
            else:
                revision = latest.revision if latest is not None else 0
        now = datetime.now(UTC)
        # Silent for three reads and ten seconds more: stopped, or cut off from the store.
        silent_since = now - timedelta(seconds=3 * self._sync_s + 10)
        # This replica as it is now, rather than as it last reported.
        own = _state(self._own_report(), revision, silent_since)
        replicas = [
            own if r.replica_id == self.replica_id else _state(r, revision, silent_since)
            for r in reports
        ]
        if own not in replicas:
            replicas.append(own)
        return Fleet(revision, self.replica_id, tuple(replicas))

    # -- admin changes ----------------------------------------------------------------------

    async def promote(self, name: str, version: str, change: Change = NO_CONDITIONS) -> None:
        def plan(base: DesiredState) -> DesiredState:
            self._registry.require_known(name, version)
            return base.with_route(name, self._spec(base, name).promoted(version))

        await self._change("promote", name, plan, change)

    async def rollback(self, name: str, change: Change = NO_CONDITIONS) -> None:
        def plan(base: DesiredState) -> DesiredState:
            spec = self._spec(base, name)
            if spec.previous is None:
                raise ModelConflictError(
                    f"model {name!r} has no previous version to roll back to; it has served "
                    f"{spec.serving} since start-up"
                )
            return base.with_route(name, spec.promoted(spec.previous))

        await self._change("rollback", name, plan, change)

    async def set_traffic(
        self,
        name: str,
        *,
        canary: str | None,
        canary_percent: float,
        shadow: str | None,
        change: Change = NO_CONDITIONS,
    ) -> None:
        def plan(base: DesiredState) -> DesiredState:
            spec = self._spec(base, name)
            for version in (canary, shadow):
                if version is not None:
                    self._registry.require_known(name, version)
                    if version == spec.serving:
                        raise ModelConflictError(f"{name}/{version} is already the serving version")
            return base.with_route(name, spec.with_traffic(canary, canary_percent, shadow))

        await self._change("traffic", name, plan, change)

    async def load(self, name: str, version: str, change: Change = NO_CONDITIONS) -> None:
        """Keep ``version`` loaded and warm on every replica (without traffic)."""

        def plan(base: DesiredState) -> DesiredState:
            self._registry.require_known(name, version)
            return base.with_warm(name, base.warm.get(name, frozenset()) | {version})

        await self._change("load", name, plan, change)

    async def unload(self, name: str, version: str, change: Change = NO_CONDITIONS) -> None:
        """Stop keeping ``version`` warm on every replica, and unload it here.

        Raises:
            ModelNotFoundError: neither kept warm nor loaded here.
            ModelConflictError: the default model's traffic reaches it.
        """
        registry = self._registry

        def plan(base: DesiredState) -> DesiredState:
            # Decided on the latest revision, under the lock: a replica behind the others
            # still stops keeping warm what they keep warm.
            if version not in base.warm.get(name, frozenset()):
                raise _HereOnly
            spec = base.route(name)
            if name == registry.default_model and spec is not None and spec.uses(version):
                raise ModelConflictError(
                    f"{name}/{version} takes the default model's traffic (serving, canary or "
                    "shadow); promote another version or clear the canary and shadow first"
                )
            return base.with_warm(name, base.warm.get(name, frozenset()) - {version})

        try:
            await self._change("unload", name, plan, change)
        except _HereOnly:
            await registry.unload(name, version)  # loaded here on demand: here only
            return
        if (name, version) in registry.runners:  # another model's routed version, say
            with contextlib.suppress(ModelNotFoundError):
                await registry.unload(name, version)

    def _spec(self, base: DesiredState, name: str) -> RouteSpec:
        spec = base.route(name)
        return spec if spec is not None else self._registry.route(name).spec

    async def _change(
        self,
        action: str,
        name: str,
        plan: Plan,
        change: Change,
    ) -> None:
        registry = self._registry
        expected = change.expected_revision
        async with self._lock:
            await registry.rescan()
            base = await self._base()
            if expected is not None and expected != base.revision:
                registry.count(action, "failed")
                raise RevisionConflictError(
                    f"the models are at revision {base.revision}, not {expected} as the "
                    "change assumed (If-Match); nothing was changed. Read GET /models again "
                    "and decide once more"
                )
            try:
                desired = plan(base)
            except _HereOnly:
                raise
            except Exception:
                registry.count(action, "failed")
                raise
            try:
                await registry.prepare(desired)
                revision = base.revision + 1
                if self._log is not None:
                    revision = await self._log.append(
                        base.revision,
                        desired.to_document(),
                        action=action,
                        model=name,
                        key_id=change.key_id,
                    )
                await registry.adopt(desired.at(revision))
            except Exception:
                registry.release()
                registry.count(action, "failed")
                raise
            self._failure = None
            registry.count(action, "ok")
            logger.warning(
                "models changed",
                extra={
                    "action": action,
                    "model": name,
                    "revision": revision,
                    "route": registry.route(name).spec.to_document(),
                    "warm": sorted(registry.warm.get(name, frozenset())),
                },
            )
        await self._report()

    async def _base(self) -> DesiredState:
        """The revision a change is made against: the latest stored one (with any model
        this replica has that it does not name yet), else this replica's own state.

        Raises:
            StoreUnavailableError: the store cannot say; a change now could not be shared.
        """
        local = self._registry.desired()
        stored = await self._latest()
        if stored is None:
            # Without a store, this process's own count; with one, nothing stored yet.
            return local if self._log is None else local.at(0)
        # Models added since keep this replica's routes; models no longer in the repository
        # drop out of the next revision.
        routes = {name: stored.routes.get(name, spec) for name, spec in local.routes.items()}
        warm = {name: versions for name, versions in stored.warm.items() if name in routes}
        return DesiredState(stored.revision, routes, warm)


def _state(report: ReplicaReport, revision: int, silent_since: datetime) -> ReplicaState:
    state: ReplicaStateName
    if report.seen_at < silent_since:
        state = "unreachable"
    elif report.failed_revision is not None and report.failed_revision >= revision:
        state = "failed"
    elif report.applied_revision >= revision:
        state = "current"
    else:
        state = "applying"
    return ReplicaState(
        report.replica_id,
        state,
        report.applied_revision,
        report.serving,
        report.started_at,
        report.seen_at,
        report.reason if state == "failed" else None,
    )
