"""Admission control: one bound on the work inside the service, shared by every model.

Every entry point (an image, a batch, a video, a V2 inference, a shadow score) holds one
admission slot for as long as it is inside the model service, under a deadline. The slots
are counted once for the whole service, not per model: the cores and memory are shared, so
a second model must not double what a replica accepts. A full queue is refused at once
(503 with Retry-After), an expired deadline answers 504 and the work is dropped before it
reaches a model, and at most ``max_concurrent_videos`` videos run at once.

Request bodies are counted too, in bytes as they arrive: what is being received, and what
the requests that received it still hold, may not pass ``body_budget_bytes`` together (a
replica's memory bound holds however many large uploads arrive at once, before any is
admitted), while a body that trickles in holds only the bytes it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from veracity.errors import DeadlineExceededError, OverloadedError
from veracity.metrics import ServiceMetrics
from veracity.settings import AdmissionLimits

REQUEST_TIMEOUT_SETTING = "VERACITY_REQUEST_TIMEOUT_S"
VIDEO_TIMEOUT_SETTING = "VERACITY_VIDEO_TIMEOUT_S"

# Set while the current task holds a slot: work it does inside (the model's, after a store
# lookup done under the same slot) is already admitted, counted once, under one deadline.
_HOLDING: ContextVar[bool] = ContextVar("veracity_admission_holding", default=False)


@dataclass(frozen=True)
class Deadline:
    """How long admitted work may take, and the setting that says so (named in the 504)."""

    seconds: float
    setting: str


class Admission:
    """Counts admitted work, refuses what is over the bound, and enforces deadlines."""

    def __init__(self, limits: AdmissionLimits, *, metrics: ServiceMetrics | None = None) -> None:
        self.limits = limits
        self.max_queue = limits.max_queue
        self.body_budget_bytes = limits.body_budget_bytes
        self.bodies_held = 0  # bytes of request bodies being received or held
        self.request_timeout_s = limits.request_timeout_s
        self.max_concurrent_videos = limits.max_concurrent_videos
        self._metrics = metrics
        self.in_flight = 0  # admitted: decoding, queued or in a forward pass
        self.videos = 0  # videos being analysed
        self._idle = asyncio.Event()
        self._idle.set()

    def check(self) -> None:
        """Raise OverloadedError when ``max_queue`` requests are already admitted (never for
        a task that holds a slot already)."""
        if self.in_flight >= self.max_queue and not _HOLDING.get():
            self.record_shed("overloaded")
            raise OverloadedError(
                f"the service is at capacity ({self.max_queue} requests queued); retry after "
                "the delay in Retry-After, or on another replica"
            )

    def take_body(self, nbytes: int, own: int) -> None:
        """Count ``nbytes`` more of a request body that already holds ``own`` bytes.

        Bytes are counted as they arrive, so a body that trickles in holds only what it
        sent; a body alone is always taken (the route's own size limit bounds it).

        Raises:
            OverloadedError: the bodies of other requests leave no room for these bytes.
        """
        others = self.bodies_held - own
        if others and self.bodies_held + nbytes > self.body_budget_bytes:
            self.record_shed("body_budget")
            raise OverloadedError(
                f"uploads being received or processed already hold {others / 2**20:.0f} MB "
                f"of this replica's {self.body_budget_bytes / 2**20:.0f} MB for request bodies "
                "(VERACITY_BODY_BUDGET_MB); retry after the delay in Retry-After, or on "
                "another replica"
            )
        self.bodies_held += nbytes

    def give_body(self, nbytes: int) -> None:
        """Release what ``take_body`` counted for a request that was answered."""
        self.bodies_held -= nbytes

    @property
    def has_room(self) -> bool:
        """Whether optional work (a shadow score) may take a slot without crowding others:
        it never takes the last quarter of the queue."""
        return self.in_flight < self.max_queue * 3 // 4

    def record_shed(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.shed.labels(reason).inc()

    @contextlib.asynccontextmanager
    async def admitted(self, deadline: Deadline | None = None) -> AsyncIterator[None]:
        """Hold one slot under a deadline (``request_timeout_s`` unless given), refused at
        once (``check``) when ``max_queue`` are held. Inside a slot the task already holds,
        nothing more is counted: the outer slot's deadline bounds it all."""
        if _HOLDING.get():
            yield
            return
        self.check()
        if deadline is None:
            deadline = Deadline(self.request_timeout_s, REQUEST_TIMEOUT_SETTING)
        timeout_s, setting = deadline.seconds, deadline.setting
        self.in_flight += 1
        self._idle.clear()
        timeout = asyncio.timeout(timeout_s)
        holding = _HOLDING.set(True)
        try:
            async with timeout:
                yield
        except TimeoutError as e:
            if not timeout.expired():
                raise
            self.record_shed("deadline_exceeded")
            raise DeadlineExceededError(
                f"not served within the {timeout_s:g} s deadline ({setting}) because the "
                "service is busy; retry later or on another replica"
            ) from e
        finally:
            _HOLDING.reset(holding)
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def video_slot(self) -> AsyncIterator[None]:
        """One of the ``max_concurrent_videos`` places; OverloadedError when none is free."""
        if self.videos >= self.max_concurrent_videos:
            self.record_shed("video_capacity")
            raise OverloadedError(
                f"{self.max_concurrent_videos} videos are already being analysed "
                "(VERACITY_MAX_CONCURRENT_VIDEOS); retry after the delay in Retry-After, or "
                "on another replica"
            )
        self.videos += 1
        try:
            yield
        finally:
            self.videos -= 1

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is admitted; False when ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    def watch(self, queue_depth: Callable[[], int]) -> None:
        """Publish the in-flight count and ``queue_depth`` as gauges read at scrape time."""
        if self._metrics is not None:
            self._metrics.in_flight.set_function(lambda: self.in_flight)
            self._metrics.queue_depth.set_function(queue_depth)
