"""The service's video pipeline (VideoScoring): decoding overlaps scoring, within its window.

A real clip is decoded by the real reader and FrameSource (wrapped to count the frames it
starts and finishes); the scorer is a fake that holds each frame until the test's
condition is met, then scores it with a tiny model. Counts and events only, no timings:
a pipeline that did not overlap would leave a held frame waiting for a decode that never
starts, which the guard reports as a failure instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import veracity.serving.frames as frames
import veracity.video.sampling as sampling
from tests.videofiles import write_video
from veracity.checkpoint import load_checkpoint
from veracity.inference.predictor import Prediction, Predictor
from veracity.serving.batcher import Pending
from veracity.video.aggregate import AggregationRule
from veracity.video.analysis import FrameSource, PreparedFrame
from veracity.video.plan import SamplingPlan, VideoLimits

SAMPLES = 12
# Only a deadlock waits this long: the guard that turns "never" into a failure.
GUARD_S = 60.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def clip() -> bytes:
    # A keyframe every 5 frames: the reader seeks, as it does on real clips.
    return write_video(seconds=3.0, fps=10, width=96, height=80, keyframe_interval=5)


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> Predictor:
    return Predictor(load_checkpoint(tiny_checkpoint), torch.device("cpu"))


@pytest.fixture
def video_pool() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-video")
    yield pool
    pool.shutdown(wait=True)


class WatchedPending(Pending):
    """The count of frames being decoded, telling ``changed`` each time a decode step is
    over: the pipeline then either starts the next step at once (the count is back to 1
    before anything else runs) or waits for its window."""

    def __init__(self, changed: asyncio.Event) -> None:
        super().__init__()
        self._changed = changed

    @contextlib.contextmanager
    def preparing(self) -> Iterator[None]:
        with super().preparing():
            yield
        self._changed.set()


class Tally:
    """Frames whose decode has started (in the video thread) against frames scored (on the
    event loop); every change wakes the scorers waiting on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self.started = 0  # decode steps begun, less those that found no more frames
        self.scored = 0
        self.exhausted = False
        self.most_held = 0  # the most frames decoding, decoded or in the scorer at once
        self.changed = asyncio.Event()
        self.pending = WatchedPending(self.changed)

    @property
    def held(self) -> int:
        with self._lock:
            return self.started - self.scored

    def decode_begins(self) -> None:
        with self._lock:
            self.started += 1
            self.most_held = max(self.most_held, self.started - self.scored)
        self._loop.call_soon_threadsafe(self.changed.set)

    def decode_ends(self, item: PreparedFrame | None) -> None:
        if item is None:
            with self._lock:
                self.started -= 1
                self.exhausted = True
        self._loop.call_soon_threadsafe(self.changed.set)

    def frame_scored(self) -> None:
        with self._lock:
            self.scored += 1

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        while not condition():
            self.changed.clear()
            if condition():
                return
            try:
                await asyncio.wait_for(self.changed.wait(), GUARD_S)
            except TimeoutError:
                pytest.fail(f"{what} never happened: decoding did not overlap scoring")


def counted_source(tally: Tally, events: list[str] | None = None) -> type[FrameSource]:
    class Counted(FrameSource):
        def next(self) -> PreparedFrame | None:
            if events is not None:
                events.append("decode")
            tally.decode_begins()
            item = super().next()
            tally.decode_ends(item)
            return item

    return Counted


async def analyse(
    monkeypatch: pytest.MonkeyPatch,
    predictor: Predictor,
    pool: ThreadPoolExecutor,
    clip: bytes,
    window: int,
    hold: Callable[[Tally, int], Callable[[], bool]],
) -> tuple[Tally, list[int]]:
    """Analyse ``clip`` with a scorer that keeps frame k (counting from 1) until
    ``hold(tally, k)()`` is true; returns the tally and the decode steps begun by the time
    each frame's score completed."""
    tally = Tally(asyncio.get_running_loop())
    monkeypatch.setattr(frames, "FrameSource", counted_source(tally))
    started_when_scored: list[int] = []
    calls = 0

    async def score(inputs: Sequence[torch.Tensor]) -> list[Prediction]:
        nonlocal calls
        calls += 1
        await tally.until(hold(tally, calls), f"the condition to release frame {calls}")
        started_when_scored.append(tally.started)
        tally.frame_scored()
        return predictor.predict(list(inputs))

    scoring = frames.VideoScoring(
        predictor, pool=pool, score=score, window=window, pending=tally.pending
    )
    analysis = await scoring.analyse(
        clip, SamplingPlan(count=SAMPLES), AggregationRule(), VideoLimits()
    )
    assert len(analysis.frames) == SAMPLES
    times = [frame.timestamp_s for frame in analysis.frames]
    assert times == sorted(times)
    assert tally.scored == SAMPLES
    return tally, started_when_scored


@pytest.mark.anyio
@pytest.mark.parametrize("window", [1, 3, 8])
async def test_frames_held_never_exceed_the_window_and_fill_it(
    monkeypatch: pytest.MonkeyPatch,
    predictor: Predictor,
    video_pool: ThreadPoolExecutor,
    clip: bytes,
    window: int,
) -> None:
    # A frame is let go only while the pipeline holds its whole window and has stopped
    # decoding (or the clip is done): each time, a pipeline that may hold one frame more
    # starts decoding it first, and one that stops short of its window leaves every frame
    # waiting.
    def full(tally: Tally, _: int) -> Callable[[], bool]:
        return lambda: (tally.held >= window and tally.pending.count == 0) or tally.exhausted

    tally, _ = await analyse(monkeypatch, predictor, video_pool, clip, window, full)
    assert tally.most_held == window


@pytest.mark.anyio
@pytest.mark.parametrize("window", [2, 8])
async def test_the_next_frame_decodes_while_a_frame_is_being_scored(
    monkeypatch: pytest.MonkeyPatch,
    predictor: Predictor,
    video_pool: ThreadPoolExecutor,
    clip: bytes,
    window: int,
) -> None:
    # Frame k's score completes only once frame k+1's decode has begun (or there is none).
    def next_begun(tally: Tally, k: int) -> Callable[[], bool]:
        return lambda: tally.started >= k + 1 or tally.exhausted

    _, started = await analyse(monkeypatch, predictor, video_pool, clip, window, next_begun)
    assert all(begun >= k + 1 for k, begun in enumerate(started[:-1], start=1))


@pytest.mark.anyio
async def test_a_cancelled_analysis_stops_decoding_and_closes_its_reader_in_a_video_thread(
    monkeypatch: pytest.MonkeyPatch,
    predictor: Predictor,
    video_pool: ThreadPoolExecutor,
    clip: bytes,
) -> None:
    # What a hang-up does: the request is cancelled while a frame is being decoded.
    events: list[str] = []

    class Reader(sampling.VideoReader):
        def close(self) -> None:
            events.append(f"close in {threading.current_thread().name}")
            super().close()

    monkeypatch.setattr(sampling, "VideoReader", Reader)
    tally = Tally(asyncio.get_running_loop())
    monkeypatch.setattr(frames, "FrameSource", counted_source(tally, events))

    async def never(inputs: Sequence[torch.Tensor]) -> list[Prediction]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    scoring = frames.VideoScoring(
        predictor, pool=video_pool, score=never, window=4, pending=tally.pending
    )
    task = asyncio.ensure_future(
        scoring.analyse(clip, SamplingPlan(count=SAMPLES), AggregationRule(), VideoLimits())
    )
    await tally.until(lambda: tally.started >= 2 and tally.pending.count == 1, "a decode")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The close was handed to the video thread; what runs there after it has run.
    await asyncio.get_running_loop().run_in_executor(video_pool, lambda: None)
    # Closed once, last, in the video thread: no decode step began after it.
    assert [event for event in events if event.startswith("close")] == [events[-1]]
    assert events[-1] == "close in test-video_0"
    assert events.count("decode") == tally.started <= 4
