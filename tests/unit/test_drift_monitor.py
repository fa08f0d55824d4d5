"""The drift monitor's background refresh: an unexpected error is logged and the next
refresh runs; stopping after one never fails; a failing store leaves the gauges and their
timestamp as they were."""

from __future__ import annotations

import asyncio
from datetime import datetime

from prometheus_client import CollectorRegistry

from tests.conftest import DEMO_CHECKPOINT
from veracity.drift.options import DriftOptions
from veracity.errors import StoreUnavailableError
from veracity.metrics import ServiceMetrics
from veracity.repository.layout import ModelRepository
from veracity.serving.drift import DriftMonitor
from veracity.store.windows import StoredAnswer


class FlakyWindows:
    """Answers like a store: first a bug, then an outage, then a window of answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def answers(
        self, model: str, version: str, start: datetime, end: datetime, *, limit: int
    ):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in a refresh")
        if self.calls == 2:
            raise StoreUnavailableError("the results store is unavailable")
        answer = {"verdict": "inconclusive", "fake_prob": 0.5, "quality": {"width": 9, "height": 9}}
        return [StoredAnswer(answer, "image/jpeg")] * 150

    async def reviews(self, *args, **kwargs):
        return []


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_the_refresh_loop_survives_errors_and_stops_cleanly() -> None:
    registry = CollectorRegistry()
    windows = FlakyWindows()
    monitor = DriftMonitor(
        ModelRepository(checkpoint=DEMO_CHECKPOINT),
        windows,  # type: ignore[arg-type]
        DriftOptions(interval_s=0.01),
        ServiceMetrics(registry),
    )

    async def scenario() -> None:
        monitor.start()
        for _ in range(500):
            if windows.calls >= 4:
                break
            await asyncio.sleep(0.01)
        await monitor.stop()
        await monitor.stop()  # twice is harmless

    asyncio.run(scenario())
    assert windows.calls >= 3  # the bug and the outage did not end the loop
    labels = {"model": "veracity-demo", "version": "3.1.0"}
    assert sample(registry, "veracity_drift_window_answers", **labels) == 150
    # Tiny, uniform, unlabelled images: far from the demo's calibration data.
    assert sample(registry, "veracity_drift_alert", **labels) == 1
    assert sample(registry, "veracity_drift_refreshed_timestamp_seconds") is not None
