"""Dynamic micro-batching: concurrent requests share one forward pass.

Each submission gets its own future. One collector task takes the first waiting item, then
keeps collecting until the batch is full or ``max_wait_s`` has passed since that first item
(a monotonic deadline), runs the whole batch with one call in the inference executor, and
hands each result back to its own future. Up to ``streams`` batches run at once, each in
its own executor thread (on a CPU, one per core, each forward pass on one intra-op thread:
a single inference thread left the second of two cores a third idle); the next batch is
collected only once a stream is free, so while every stream is busy new submissions queue
up and the next batch is fuller, and preprocessing overlaps inference.

A batch waits for company only while more is on its way: when the caller says how many items
are still being prepared (``expected``, e.g. requests still being decoded), the collector
stops waiting as soon as none are, so a lone request goes straight to the model. It never
waits longer than ``max_wait_s``; ``max_batch_size=1`` disables waiting. A submission whose
caller has gone away (its future cancelled, e.g. a client disconnect) is dropped before the
batch runs. If the batch call itself raises, every request in that batch gets the exception:
per-request failures (a corrupt image) happen before submission, so they never reach a
batch.

Two classes of items share the batches: interactive ones (a single image's request) and
bulk ones (a video's frames, a batch upload's files; ``submit(..., bulk=True)``). A batch
takes the waiting interactive items first, in arrival order; bulk items fill the places
left, but while interactive traffic is active they take at most ``bulk_share`` places;
and they always get those places when they are waiting, however many interactive items
wait, so a video keeps ``bulk_share`` frames of every forward pass under any image load.
"Active" means interactive items are waiting, or a batch carried some within the last
``interactive_grace_s`` (default: two forward passes): clients that send one image after
another are between requests for a moment after each answer, and a batch of frames alone
taken in that moment would make their next image wait a whole forward pass. So a video
never makes an image wait behind its frames, and never inflates an image's forward pass by
more than ``bulk_share`` items; alone, a video still fills whole batches.

Traces: a forward pass serves several requests, each in its own trace. Rather than one
batch span that no request's trace would show (a root of its own, sampled on its own), each
item submitted under a recorded span gets two spans there, written with the batch's times
once it has run: ``batcher.queue`` (from submission to the start of its batch) and
``model.forward`` (the shared pass, with the batch's size and a ``veracity.batch.id`` that
the other items of the pass carry too).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from opentelemetry.trace import NoOpTracer, Span, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.util.types import Attributes

from veracity.errors import ServiceUnavailableError
from veracity.tracing import recording

logger = logging.getLogger("veracity.batcher")

I = TypeVar("I")  # noqa: E741 - the conventional name of an input type variable
O = TypeVar("O")  # noqa: E741


@dataclass(frozen=True)
class _Traced:
    """Where an item's batch spans go: the recorded span it was submitted under."""

    parent: Span
    queued_ns: int


# item, its future, its trace (None: not recorded)
_Entry = tuple[I, "asyncio.Future[O]", _Traced | None]
_Queued = tuple[I, "asyncio.Future[O]", _Traced | None, bool]  # ... and bulk


class Pending:
    """Items being prepared that will be submitted soon: what a batcher's ``expected`` reads."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def preparing(self) -> Iterator[None]:
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class MicroBatcher(Generic[I, O]):
    """Collects ``submit``-ted items into batches for ``run_batch``.

    Args:
        run_batch: Called in ``executor`` with a list of items; returns one output per item,
            in order.
        max_batch_size: Largest batch (>= 1).
        max_wait_s: How long the first item of a batch waits for more (>= 0).
        executor: Where ``run_batch`` runs: at least ``streams`` workers.
        on_batch: Optional observer called with each dispatched batch's size.
        expected: Optional count of items that will be submitted soon; while it is 0 and the
            queue is empty, a batch is dispatched without waiting.
        bulk_share: The most bulk items in a batch while interactive traffic is active
            (default: no limit).
        interactive_grace_s: How long after a batch with interactive items the traffic
            counts as active (default: twice the last forward pass, at least 50 ms).
        tracer: Writes the queue and forward-pass spans of recorded items.
        span_attributes: Put on every forward-pass span (the model's name and version).
        streams: How many batches may run at once (each in its own executor thread).
    """

    def __init__(
        self,
        run_batch: Callable[[list[I]], Sequence[O]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        executor: Executor,
        on_batch: Callable[[int], None] | None = None,
        expected: Callable[[], int] | None = None,
        bulk_share: int | None = None,
        interactive_grace_s: float | None = None,
        tracer: Tracer | None = None,
        span_attributes: Attributes = None,
        streams: int = 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")
        if streams < 1:
            raise ValueError("streams must be >= 1")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._executor = executor
        self._on_batch = on_batch
        self._expected = expected
        self.bulk_share = max_batch_size if bulk_share is None else max(1, bulk_share)
        self._grace_s = interactive_grace_s
        self._last_interactive = -float("inf")  # loop time of the last interactive batch
        self._last_run_s = 0.0  # how long the last forward pass took
        self._carries_interactive = False  # the batch being dispatched has interactive items
        self._queue: asyncio.Queue[_Queued[I, O]] = asyncio.Queue()
        # Collected but not yet dispatched, by class. Here, not in locals, so stop() can fail
        # them too.
        self._interactive: deque[_Entry[I, O]] = deque()
        self._bulk: deque[_Entry[I, O]] = deque()
        self._collecting: list[_Entry[I, O]] = []
        self._task: asyncio.Task[None] | None = None
        self.running = 0  # items in the batches now in the executor
        self._free = asyncio.Semaphore(streams)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._tracer = tracer or NoOpTracer()
        self._span_attributes = dict(span_attributes or {})
        self._batch_ids = itertools.count(1)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._collect(), name="veracity-batcher")

    async def submit(self, item: I, *, bulk: bool = False) -> O:
        """Queue ``item`` and wait for its output; ``bulk`` for a video's frames or a batch
        upload's files (see the module's docstring)."""
        if self._task is None or self._task.done():
            raise ServiceUnavailableError("the inference queue is not running")
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        parent = recording()
        traced = None if parent is None else _Traced(parent, time.time_ns())
        await self._queue.put((item, future, traced, bulk))
        return await future

    async def stop(self) -> None:
        """Finish the batch in progress, then fail whatever is still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._in_flight:  # the batches that started finish and deliver their outputs
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        leftovers = [*self._collecting, *self._interactive, *self._bulk]
        leftovers += [self._queue.get_nowait()[:3] for _ in range(self._queue.qsize())]
        self._collecting = []
        self._interactive.clear()
        self._bulk.clear()
        for _, future, _ in leftovers:
            if not future.done():
                future.set_exception(
                    ServiceUnavailableError(
                        "the service is shutting down; retry on another replica"
                    )
                )

    def _take(self, queued: _Queued[I, O]) -> None:
        item, future, traced, bulk = queued
        (self._bulk if bulk else self._interactive).append((item, future, traced))

    def _waiting(self) -> int:
        return len(self._interactive) + len(self._bulk)

    async def _next_batch(self) -> list[_Entry[I, O]]:
        loop = asyncio.get_running_loop()
        if not self._waiting():
            self._take(await self._queue.get())
        # loop.time() is monotonic: the deadline cannot jump with the wall clock.
        deadline = loop.time() + self.max_wait_s
        while True:
            while not self._queue.empty():
                self._take(self._queue.get_nowait())
            if self._waiting() >= self.max_batch_size:
                break
            remaining = deadline - loop.time()
            if remaining <= 0 or (self._expected is not None and self._expected() == 0):
                break
            try:
                self._take(await asyncio.wait_for(self._queue.get(), timeout=remaining))
            except TimeoutError:
                break
        batch: list[_Entry[I, O]] = []
        # Bulk items waiting keep their share of every batch (a guaranteed minimum, not only
        # a maximum): with images always waiting, a video would otherwise get no place at
        # all and run into its deadline. One place stays interactive, whatever the share.
        reserved = min(len(self._bulk), self.bulk_share, self.max_batch_size - 1)
        while self._interactive and len(batch) < self.max_batch_size - reserved:
            batch.append(self._interactive.popleft())
        room = self.max_batch_size - len(batch)
        grace = self._grace_s if self._grace_s is not None else max(0.05, 2 * self._last_run_s)
        self._carries_interactive = bool(batch)
        active = bool(batch) or loop.time() - self._last_interactive < grace
        for _ in range(min(room, self.bulk_share) if active else room):
            if not self._bulk:
                break
            batch.append(self._bulk.popleft())
        self._collecting = batch
        return batch

    async def _collect(self) -> None:
        while True:
            # A stream must be free before the next batch is collected: while every stream
            # is busy, arrivals wait in the queue and make the next batch fuller.
            await self._free.acquire()
            try:
                batch = [entry for entry in await self._next_batch() if not entry[1].cancelled()]
            except BaseException:
                self._free.release()
                raise
            self._collecting = []
            if not batch:
                self._free.release()
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            task = asyncio.create_task(self._dispatch(batch, self._carries_interactive))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _dispatch(self, batch: list[_Entry[I, O]], interactive: bool) -> None:
        """Run one batch in the executor and deliver its outputs (its stream is freed when
        it is done). Not cancelled by ``stop``: a batch that started finishes."""
        loop = asyncio.get_running_loop()
        self.running += len(batch)
        started, started_ns, failure = loop.time(), time.time_ns(), None
        try:
            outputs = await loop.run_in_executor(
                self._executor, self._run_batch, [entry[0] for entry in batch]
            )
        except Exception as e:
            failure = e
            logger.error("batch failed", extra={"batch_size": len(batch)}, exc_info=e)
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(e)
            return
        finally:
            self.running -= len(batch)
            self._free.release()
            self._last_run_s = loop.time() - started
            if interactive:
                # Answered now: their clients' next requests are on their way.
                self._last_interactive = loop.time()
            self._trace(batch, started_ns, failure)
        self._deliver(batch, outputs)

    def _trace(self, batch: list[_Entry[I, O]], started_ns: int, failure: Exception | None) -> None:
        """The queue and forward-pass spans of the batch's recorded items (written after
        the pass, with its times: nothing is traced on the inference thread)."""
        traced = [entry[2] for entry in batch if entry[2] is not None]
        if not traced:
            return
        ended_ns = time.time_ns()
        attributes = self._span_attributes | {
            "veracity.batch.size": len(batch),
            "veracity.batch.id": next(self._batch_ids),
        }
        for item in traced:
            parent = set_span_in_context(item.parent)
            queued = self._tracer.start_span(
                "batcher.queue", context=parent, start_time=item.queued_ns
            )
            queued.end(end_time=started_ns)
            forward = self._tracer.start_span(
                "model.forward", context=parent, attributes=attributes, start_time=started_ns
            )
            if failure is not None:
                forward.record_exception(failure)
                forward.set_status(Status(StatusCode.ERROR, type(failure).__name__))
            forward.end(end_time=ended_ns)

    @staticmethod
    def _deliver(batch: list[_Entry[I, O]], outputs: Sequence[O]) -> None:
        assert len(outputs) == len(batch), "run_batch must return one output per item"
        for (_, future, _), output in zip(batch, outputs, strict=True):
            if not future.done():
                future.set_result(output)
