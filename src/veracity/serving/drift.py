"""Drift of every profiled model version over the live window, for ``GET /admin/drift``,
the Prometheus gauges and ``veracity drift-report``.

Every version in the repository whose checkpoint carries a drift profile is scored, loaded
here or not: traffic to a version may have been answered by another replica, and the
window is read from the shared store, so every replica reports the same figures. The
gauges are recomputed every ``interval_s`` in the background; a failing store leaves them
as they were (logged), and a request to the route answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from veracity.checkpoint import CheckpointPaths
from veracity.drift.compare import AGREEMENT, Review, VersionDrift, Window, assess, gauge_value
from veracity.drift.options import DriftOptions
from veracity.drift.profile import DriftProfile, load_profile
from veracity.drift.report import Unmonitored
from veracity.drift.signals import SIGNALS, Observation
from veracity.errors import CheckpointError, ServiceUnavailableError
from veracity.metrics import ServiceMetrics
from veracity.repository.layout import ModelRepository, ModelVersion
from veracity.store.windows import AnswerWindows

logger = logging.getLogger("veracity.drift")

SIGNAL_NAMES = (*(s.name for s in SIGNALS), AGREEMENT)

NO_PROFILE = (
    "its checkpoint has no drift profile; build one with `veracity calibrate "
    "--profile-only` (training builds one with the calibration)"
)


@dataclass(frozen=True)
class DriftState:
    window: Window
    versions: tuple[VersionDrift, ...]
    unmonitored: tuple[Unmonitored, ...]


class DriftMonitor:
    def __init__(
        self,
        repository: ModelRepository,
        windows: AnswerWindows,
        options: DriftOptions,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.repository = repository
        self.windows = windows
        self.options = options
        self._metrics = metrics
        self._profiles: dict[tuple[str, str, str], DriftProfile] = {}  # by profile SHA-256
        self._task: asyncio.Task[None] | None = None
        self._exported: set[tuple[str, str]] = set()

    def _profile(self, version: ModelVersion) -> DriftProfile | str:
        record = version.metadata.drift_profile
        if record is None:
            return NO_PROFILE
        key = (version.name, version.version, record.sha256)
        if key not in self._profiles:
            paths = CheckpointPaths.resolve(version.checkpoint)
            try:
                profile = load_profile(paths, version.metadata)
            except CheckpointError as e:
                return self.repository.public(e.message)
            assert profile is not None  # the record says there is one
            self._profiles[key] = profile
        return self._profiles[key]

    def _profiled(
        self, model: str | None, version: str | None
    ) -> tuple[list[tuple[ModelVersion, DriftProfile]], list[Unmonitored]]:
        try:
            versions, _ = self.repository.scan()
        except CheckpointError as e:
            # Not "no versions": that would clear every gauge and resolve every alert.
            raise ServiceUnavailableError(
                "drift cannot be scored: the model repository is unreadable "
                f"({self.repository.public(e.message)})"
            ) from e
        profiled, unmonitored = [], []
        for v in versions:
            if (model is not None and v.name != model) or (
                version is not None and v.version != version
            ):
                continue
            profile = self._profile(v)
            if isinstance(profile, str):
                unmonitored.append(Unmonitored(v.name, v.version, profile))
            else:
                profiled.append((v, profile))
        return profiled, unmonitored

    async def assess(
        self,
        *,
        model: str | None = None,
        version: str | None = None,
        window_s: float | None = None,
        end: datetime | None = None,
    ) -> DriftState:
        """Score each profiled version (optionally one model or version) over the window
        ending at ``end`` (now).

        Raises:
            StoreUnavailableError: the store failed or did not answer in time.
            ServiceUnavailableError: the model repository is unreadable.
        """
        end = end or datetime.now(UTC)
        window = Window(end - timedelta(seconds=window_s or self.options.window_s), end)
        reviews = Window(end - timedelta(seconds=self.options.review_window_s), end)
        profiled, unmonitored = await asyncio.to_thread(self._profiled, model, version)
        results = [await self._assess_one(v, profile, window, reviews) for v, profile in profiled]
        return DriftState(window, tuple(results), tuple(unmonitored))

    async def _assess_one(
        self, version: ModelVersion, profile: DriftProfile, window: Window, reviewed: Window
    ) -> VersionDrift:
        # Named as the repository serves and the store records them (NAME/VERSION), which
        # may differ from the names inside the checkpoint's metadata.
        limit = self.options.max_answers
        stored = await self.windows.answers(
            version.name, version.version, window.start, window.end, limit=limit
        )
        reviews = await self.windows.reviews(
            version.name, version.version, reviewed.start, reviewed.end, limit=limit
        )
        observations = [Observation.from_answer(s.answer, s.media_type) for s in stored]
        return assess(
            version.name,
            version.version,
            profile,
            window,
            observations,
            [Review(verdict, label) for verdict, label in reviews],
            self.options.thresholds,
        )

    def export(self, versions: Sequence[VersionDrift]) -> None:
        """Set the gauges to ``versions``' scores (a version no longer scored is removed)."""
        if self._metrics is None:
            return
        metrics = self._metrics
        current = {(d.model, d.version) for d in versions}
        for model, version in self._exported - current:
            with contextlib.suppress(KeyError):
                metrics.drift_alert.remove(model, version)
                metrics.drift_window_answers.remove(model, version)
            for signal in SIGNAL_NAMES:
                with contextlib.suppress(KeyError):
                    metrics.drift_score.remove(model, version, signal)
        for drift in versions:
            for score in drift.signals:
                metrics.drift_score.labels(drift.model, drift.version, score.signal).set(
                    gauge_value(score)
                )
            metrics.drift_alert.labels(drift.model, drift.version).set(int(drift.alert))
            metrics.drift_window_answers.labels(drift.model, drift.version).set(drift.answers)
        self._exported = current

    async def refresh(self) -> DriftState | None:
        """Recompute every version's scores and export them; None (the gauges left as
        they were, their age in veracity_drift_refreshed_timestamp_seconds) if the store or
        the repository failed."""
        try:
            state = await self.assess()
        except ServiceUnavailableError as e:
            logger.warning("drift not recomputed", extra={"error": e.message})
            return None
        self.export(state.versions)
        if self._metrics is not None:
            self._metrics.drift_refreshed.set_to_current_time()
        for drift in state.versions:
            if drift.alert:
                logger.warning(
                    "drift alert",
                    extra={
                        "model": drift.model,
                        "version": drift.version,
                        "signals": [s.signal for s in drift.signals if s.state == "drift"],
                        "answers": drift.answers,
                    },
                )
        return state

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug must not end monitoring for the replica's lifetime
                logger.exception("drift not recomputed: unexpected error")
            await asyncio.sleep(self.options.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="veracity-drift")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # Whatever ended the task, shutting down goes on (jobs handed back, store closed).
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
