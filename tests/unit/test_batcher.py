"""The micro-batcher: batching, routing, isolation, bounds and shutdown."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veracity.errors import ServiceUnavailableError
from veracity.serving.batcher import MicroBatcher


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


class Recorder:
    """A run_batch that doubles its inputs and records every batch it was given."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate

    def __call__(self, items: list[int]) -> list[int]:
        if self.gate is not None:
            assert self.gate.wait(10)
        self.batches.append(list(items))
        return [2 * item for item in items]


async def started(run_batch, executor, **kwargs) -> MicroBatcher:
    batcher = MicroBatcher(run_batch, executor=executor, **kwargs)
    batcher.start()
    return batcher


@pytest.mark.anyio
async def test_concurrent_requests_share_batches_and_get_their_own_results(executor) -> None:
    recorder = Recorder()
    batcher = await started(recorder, executor, max_batch_size=4, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [2 * i for i in range(10)]
    sizes = [len(batch) for batch in recorder.batches]
    assert sum(sizes) == 10
    assert max(sizes) == 4
    assert sorted(item for batch in recorder.batches for item in batch) == list(range(10))
    await batcher.stop()


@pytest.mark.anyio
async def test_a_lone_request_is_dispatched_once_the_wait_bound_passes(executor) -> None:
    recorder = Recorder()
    batcher = await started(recorder, executor, max_batch_size=8, max_wait_s=0.02)
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    # Generous outer bound: the test checks that a lone request is not held for company
    # indefinitely, not how fast this machine is.
    assert await asyncio.wait_for(batcher.submit(21), timeout=5) == 42
    assert loop.time() - started_at >= 0.02
    assert recorder.batches == [[21]]
    await batcher.stop()


@pytest.mark.anyio
async def test_batch_size_one_never_waits(executor) -> None:
    recorder = Recorder()
    batcher = await started(recorder, executor, max_batch_size=1, max_wait_s=3600)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(3))), 5)
    assert results == [0, 2, 4]
    assert recorder.batches == [[0], [1], [2]]
    await batcher.stop()


@pytest.mark.anyio
async def test_a_failing_batch_fails_its_requests_and_the_next_batch_succeeds(executor) -> None:
    calls = []

    def flaky(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("forward pass failed")
        return [-item for item in items]

    batcher = await started(flaky, executor, max_batch_size=4, max_wait_s=0.01)
    with pytest.raises(RuntimeError, match="forward pass failed"):
        await batcher.submit(1)
    assert await batcher.submit(2) == -2
    await batcher.stop()


@pytest.mark.anyio
async def test_a_cancelled_request_never_reaches_the_model(executor) -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = await started(recorder, executor, max_batch_size=1, max_wait_s=0)
    first = asyncio.create_task(batcher.submit(1))  # occupies the model until the gate opens
    await asyncio.sleep(0.05)
    abandoned = asyncio.create_task(batcher.submit(2))
    kept = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0.05)
    abandoned.cancel()  # the client disconnected while queued
    gate.set()
    assert await first == 2
    assert await kept == 6
    assert [2] not in recorder.batches
    assert recorder.batches == [[1], [3]]
    await batcher.stop()


@pytest.mark.anyio
async def test_stop_finishes_the_running_batch_and_fails_queued_ones(executor) -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = await started(recorder, executor, max_batch_size=1, max_wait_s=0)
    running = asyncio.create_task(batcher.submit(5))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(batcher.submit(6))
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0.05)
    gate.set()
    await stopping
    assert await running == 10
    with pytest.raises(ServiceUnavailableError, match="shutting down"):
        await queued
    with pytest.raises(ServiceUnavailableError, match="not running"):
        await batcher.submit(7)


class Meeting:
    """A run_batch that returns only once ``parties`` batches are inside it at the same
    time (a barrier): it fails, by timing out, where batches run one after another."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)
        self.batches: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.barrier.wait()
        self.batches.append(list(items))
        return [2 * item for item in items]


@pytest.mark.anyio
async def test_two_streams_run_two_batches_at_the_same_time() -> None:
    meeting = Meeting(2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        batcher = await started(meeting, pool, max_batch_size=2, max_wait_s=0, streams=2)
        assert await asyncio.gather(*(batcher.submit(i) for i in range(4))) == [0, 2, 4, 6]
        await batcher.stop()
    assert len(meeting.batches) == 2


@pytest.mark.anyio
async def test_one_stream_never_runs_two_batches_at_once() -> None:
    inside, most = 0, 0
    lock = threading.Lock()

    def run(items: list[int]) -> list[int]:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        threading.Event().wait(0.01)
        with lock:
            inside -= 1
        return items

    with ThreadPoolExecutor(max_workers=4) as pool:
        batcher = await started(run, pool, max_batch_size=1, max_wait_s=0, streams=1)
        await asyncio.gather(*(batcher.submit(i) for i in range(6)))
        await batcher.stop()
    assert most == 1


@pytest.mark.anyio
async def test_stop_lets_every_running_stream_finish() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    with ThreadPoolExecutor(max_workers=2) as pool:
        batcher = await started(recorder, pool, max_batch_size=1, max_wait_s=0, streams=2)
        running = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(batcher.submit(3))
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0.05)
        gate.set()
        await stopping
        assert [await task for task in running] == [2, 4]
        with pytest.raises(ServiceUnavailableError, match="shutting down"):
            await queued


def test_streams_below_one_are_refused(executor) -> None:
    with pytest.raises(ValueError, match="streams"):
        MicroBatcher(Recorder(), executor=executor, max_batch_size=4, max_wait_s=0, streams=0)


@pytest.mark.parametrize(("size", "wait"), [(0, 0.01), (4, -1.0)])
def test_invalid_limits_are_refused(executor, size: int, wait: float) -> None:
    with pytest.raises(ValueError, match="max_"):
        MicroBatcher(Recorder(), executor=executor, max_batch_size=size, max_wait_s=wait)


@pytest.mark.anyio
async def test_a_lone_request_does_not_wait_when_nothing_else_is_coming(executor) -> None:
    recorder = Recorder()
    batcher = await started(
        recorder, executor, max_batch_size=8, max_wait_s=3600, expected=lambda: 0
    )
    # With an hour of allowed waiting, only the "nothing expected" rule can release it.
    assert await asyncio.wait_for(batcher.submit(4), timeout=5) == 8
    await batcher.stop()


@pytest.mark.anyio
async def test_the_batch_waits_for_requests_still_being_prepared(executor) -> None:
    recorder = Recorder()
    coming = {"n": 1}
    batcher = await started(
        recorder, executor, max_batch_size=8, max_wait_s=5, expected=lambda: coming["n"]
    )
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.05)  # the second request is still "decoding"
    coming["n"] = 0
    second = asyncio.create_task(batcher.submit(2))
    assert await asyncio.wait_for(asyncio.gather(first, second), timeout=5) == [2, 4]
    assert recorder.batches == [[1, 2]]
    await batcher.stop()


@pytest.mark.anyio
async def test_interactive_items_go_first_and_bulk_items_take_at_most_their_share(
    executor,
) -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = await started(
        recorder,
        executor,
        max_batch_size=4,
        max_wait_s=0.01,
        bulk_share=1,
        interactive_grace_s=0.0,
    )
    # The first item occupies the model; everything else queues behind it: a video's six
    # frames (100-105) first, then three images (0-2).
    first = asyncio.ensure_future(batcher.submit(-1))
    await asyncio.sleep(0.05)
    frames = [asyncio.ensure_future(batcher.submit(100 + i, bulk=True)) for i in range(6)]
    await asyncio.sleep(0)
    images = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(first, *frames, *images) == [
        -2,
        *(2 * (100 + i) for i in range(6)),
        0,
        2,
        4,
    ]
    # The images, though they came after the frames, share the next forward pass with one
    # frame only; with no image waiting, frames fill whole batches.
    assert recorder.batches == [[-1], [0, 1, 2, 100], [101, 102, 103, 104], [105]]
    await batcher.stop()


@pytest.mark.anyio
@pytest.mark.parametrize(("grace", "expected"), [(3600.0, [[1], [2]]), (0.0, [[1, 2]])])
async def test_bulk_items_stay_within_their_share_while_interactive_traffic_is_active(
    executor, grace: float, expected: list[list[int]]
) -> None:
    """Just after images were answered their clients are about to send the next ones: a
    video's frames do not take the whole next forward pass in that moment."""
    recorder = Recorder()
    batcher = await started(
        recorder,
        executor,
        max_batch_size=4,
        max_wait_s=0.01,
        bulk_share=1,
        interactive_grace_s=grace,
    )
    assert await batcher.submit(0) == 0  # an image, answered
    frames = await asyncio.gather(*(batcher.submit(i, bulk=True) for i in (1, 2)))
    assert frames == [2, 4]
    assert recorder.batches[1:] == expected
    await batcher.stop()


@pytest.mark.anyio
async def test_bulk_items_keep_their_share_when_images_fill_every_batch(executor) -> None:
    """Images always waiting (more than a batch of them) must not starve a video: its frames
    still get their share of every forward pass."""
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = await started(
        recorder,
        executor,
        max_batch_size=4,
        max_wait_s=0.01,
        bulk_share=1,
        interactive_grace_s=0.0,
    )
    first = asyncio.ensure_future(batcher.submit(-1))
    await asyncio.sleep(0.05)
    images = [asyncio.ensure_future(batcher.submit(i)) for i in range(8)]
    frames = [asyncio.ensure_future(batcher.submit(100 + i, bulk=True)) for i in range(2)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, *images, *frames)
    # Two full batches of images would have come first; each batch carries a frame instead.
    assert recorder.batches == [[-1], [0, 1, 2, 100], [3, 4, 5, 101], [6, 7]]
    await batcher.stop()


@pytest.mark.anyio
async def test_each_recorded_item_gets_its_wait_and_the_shared_pass_in_its_own_trace(
    executor,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    gate = threading.Event()
    batcher = await started(
        Recorder(gate),
        executor,
        max_batch_size=8,
        max_wait_s=0.05,
        tracer=tracer,
        span_attributes={"veracity.model.name": "tiny"},
    )

    async def request(name: str, item: int) -> int:
        with tracer.start_as_current_span(name):
            return await batcher.submit(item)

    first = asyncio.ensure_future(batcher.submit(0))  # blocks the executor: the rest wait
    await asyncio.sleep(0.1)
    # Two traced requests and one outside any trace share the next batch.
    waiting = asyncio.gather(request("a", 1), request("b", 2), batcher.submit(3))
    await asyncio.sleep(0.1)
    gate.set()
    assert await first == 0
    assert await waiting == [2, 4, 6]
    await batcher.stop()
    spans = exporter.get_finished_spans()
    parents = {s.name: s for s in spans if s.name in ("a", "b")}
    forwards = [s for s in spans if s.name == "model.forward"]
    queues = [s for s in spans if s.name == "batcher.queue"]
    # The untraced items (the first batch's, and the third request) wrote nothing.
    assert len(forwards) == len(queues) == 2
    for span in forwards + queues:
        assert span.parent is not None
        assert span.parent.span_id in {p.context.span_id for p in parents.values()}
    assert {f.attributes["veracity.batch.size"] for f in forwards} == {3}
    assert len({f.attributes["veracity.batch.id"] for f in forwards}) == 1  # one pass
    assert all(f.attributes["veracity.model.name"] == "tiny" for f in forwards)
    for name, parent in parents.items():
        (queue,) = [q for q in queues if q.parent.span_id == parent.context.span_id]
        (forward,) = [f for f in forwards if f.parent.span_id == parent.context.span_id]
        # It waited while the first batch ran, then its pass started where the wait ended.
        assert queue.end_time - queue.start_time >= 50_000_000, name
        assert queue.end_time == forward.start_time
        assert parent.start_time <= queue.start_time
        assert forward.end_time <= parent.end_time
