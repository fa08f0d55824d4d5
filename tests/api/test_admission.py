"""Admission control: a bounded queue, per-request deadlines, disconnects and slow bodies."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.api.asgi import body_then, call, disconnect, half_then_disconnect, multipart, stall
from tests.api.conftest import (
    API_KEY,
    assert_error,
    assert_still_serving,
    infer,
    jpeg_bytes,
    make_settings,
    serving,
)
from tests.videofiles import write_video
from veracity.serving.recording import Recorder
from veracity.serving.runner import ModelRunner


@dataclass
class Gate:
    """Holds every forward pass until opened; records the batch sizes that reached the model."""

    opened: threading.Event = field(default_factory=threading.Event)
    batches: list[int] = field(default_factory=list)


@pytest.fixture
def gate(monkeypatch) -> Gate:
    gate = Gate()
    original = ModelRunner._infer_batch

    def gated(self, tensors):
        gate.batches.append(len(tensors))
        assert gate.opened.wait(30), "the test never opened the gate"
        return original(self, tensors)

    monkeypatch.setattr(ModelRunner, "_infer_batch", gated)
    return gate


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def metric(client, line_prefix: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_full_queue_is_shed_at_once_and_admitted_requests_finish(
    tiny_checkpoint: Path, gate: Gate
) -> None:
    # One inference stream: the second request waits behind the first's forward pass.
    settings = make_settings(tiny_checkpoint, max_queue=2, max_batch_size=1, inference_streams=1)
    with serving(settings) as client:
        service = client.app.state.model_service
        with ThreadPoolExecutor(max_workers=2) as pool:
            admitted = [pool.submit(infer, client, jpeg_bytes(seed=i)) for i in range(2)]
            wait_until(lambda: service.admission.in_flight == 2 and gate.batches == [1])
            assert metric(client, "veracity_queue_depth") == 1.0
            assert metric(client, "veracity_inference_in_flight") == 2.0

            shed = infer(client, jpeg_bytes(seed=5))
            error = assert_error(shed, 503, "overloaded")
            assert shed.headers["retry-after"] == "1"
            assert "capacity" in error["message"]
            assert metric(client, 'veracity_shed_requests_total{reason="overloaded"}') == 1.0
            # The store was asked only about the admitted requests' uploads.
            assert metric(client, 'veracity_cache_lookups_total{result="miss"}') == 2.0

            gate.opened.set()
            assert [future.result().status_code for future in admitted] == [200, 200]
        assert metric(client, "veracity_queue_depth") == 0.0
        assert_still_serving(client)


def test_a_slow_store_lookup_of_a_batch_or_video_ends_at_its_deadline(
    tiny_checkpoint: Path, monkeypatch
) -> None:
    # The exact-cache lookup runs under the request's slot and deadline, as the model's
    # work does: a store that stalls answers 504 within the deadline, not when it wakes.
    stalled = {"on": True}
    original_cached = Recorder.cached

    async def slow(self, keys, caller):  # type: ignore[no-untyped-def]
        if stalled["on"]:
            await asyncio.sleep(5)
        return await original_cached(self, keys, caller)

    monkeypatch.setattr(Recorder, "cached", slow)
    settings = make_settings(tiny_checkpoint, request_timeout_s=0.5, video_timeout_s=0.5)
    clip = write_video(seconds=1.0)
    headers = {"X-API-Key": API_KEY}
    with serving(settings) as client:
        admission = client.app.state.model_service.admission
        parts = [("files", (f"{i}.jpg", jpeg_bytes(seed=10 + i), "image/jpeg")) for i in (0, 1)]
        started = time.monotonic()
        batch = client.post("/infer/batch", files=parts, headers=headers)
        error = assert_error(batch, 504, "deadline_exceeded")
        assert "VERACITY_REQUEST_TIMEOUT_S" in error["message"]
        video = client.post(
            "/infer/video", files={"file": ("c.mp4", clip, "video/mp4")}, headers=headers
        )
        error = assert_error(video, 504, "deadline_exceeded")
        assert "VERACITY_VIDEO_TIMEOUT_S" in error["message"]
        # Each ended at its deadline, not after the store's 5 s stall.
        assert time.monotonic() - started < 5
        assert admission.in_flight == 0
        stalled["on"] = False
        assert_still_serving(client)


def test_a_stored_video_is_answered_while_every_video_place_is_taken(
    tiny_checkpoint: Path,
) -> None:
    settings = make_settings(tiny_checkpoint, max_concurrent_videos=1)
    clip, other = write_video(seconds=1.0), write_video(seconds=1.0, width=192)

    def post(data: bytes):
        files = {"file": ("clip.mp4", data, "video/mp4")}
        return client.post("/infer/video", files=files, headers={"X-API-Key": API_KEY})

    with serving(settings) as client:
        admission = client.app.state.model_service.admission
        first = post(clip)
        assert first.status_code == 200, first.text
        admission.videos = 1  # another video holds the only place
        try:
            again = post(clip)
            assert again.status_code == 200, again.text
            assert again.json()["cached"] is True
            assert_error(post(other), 503, "overloaded")
        finally:
            admission.videos = 0
        assert admission.in_flight == 0
        assert_still_serving(client)


def test_a_request_past_its_deadline_gets_504_and_never_reaches_the_model(
    tiny_checkpoint: Path, gate: Gate
) -> None:
    # One inference stream: the second request queues behind the first's forward pass.
    settings = make_settings(
        tiny_checkpoint, max_batch_size=1, request_timeout_s=0.5, inference_streams=1
    )
    with serving(settings) as client:
        service = client.app.state.model_service
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(infer, client, jpeg_bytes(seed=1))
            wait_until(lambda: gate.batches == [1])  # the first is in the model
            second = pool.submit(infer, client, jpeg_bytes(seed=2))  # queued behind it
            for response in (first.result(), second.result()):
                error = assert_error(response, 504, "deadline_exceeded")
                assert "VERACITY_REQUEST_TIMEOUT_S" in error["message"]
        assert service.admission.in_flight == 0
        gate.opened.set()
        assert_still_serving(client)
        # The first was already running when its deadline passed; the queued one was
        # dropped: the model saw the first and the follow-up request only.
        assert gate.batches == [1, 1]
        assert metric(client, 'veracity_shed_requests_total{reason="deadline_exceeded"}') == 2.0


def test_a_client_that_disconnects_while_queued_frees_its_slot(
    tiny_checkpoint: Path, gate: Gate
) -> None:
    # One inference stream: the second request queues behind the first's forward pass.
    settings = make_settings(tiny_checkpoint, max_batch_size=1, max_queue=2, inference_streams=1)
    with serving(settings) as client:
        service = client.app.state.model_service
        hang_up = threading.Event()

        async def after_body() -> dict:
            while not hang_up.is_set():
                await asyncio.sleep(0.01)
            return await disconnect()

        headers, body = multipart(jpeg_bytes(seed=3))
        with ThreadPoolExecutor(max_workers=2) as pool:
            running = pool.submit(infer, client, jpeg_bytes(seed=1))
            wait_until(lambda: gate.batches == [1])
            gone = pool.submit(call, client, headers, body_then(body, after_body))
            wait_until(lambda: service.admission.in_flight == 2)
            hang_up.set()
            # The slot is free while the first request still holds the model.
            wait_until(lambda: service.admission.in_flight == 1)
            assert not running.done()
            assert gone.result().status == 499
            gate.opened.set()
            assert running.result().status_code == 200
        assert_still_serving(client)
        assert gate.batches == [1, 1]  # the abandoned request never reached the model
        reason = 'veracity_shed_requests_total{reason="client_disconnected"}'
        assert metric(client, reason) == 1.0


def test_a_client_that_disconnects_mid_upload_costs_nothing(client) -> None:
    headers, body = multipart(jpeg_bytes())
    response = call(client, headers, half_then_disconnect(body))
    assert response.status == 499
    assert client.app.state.model_service.admission.in_flight == 0
    assert_still_serving(client)


def test_a_trickling_body_is_cut_off_with_408(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint, body_timeout_s=0.3)) as client:
        headers, body = multipart(jpeg_bytes())
        sent = False

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body[:100], "more_body": True}
            return await stall()

        started = time.monotonic()
        response = call(client, headers, receive)
        assert time.monotonic() - started < 5
        assert response.status == 408
        assert response.headers["connection"] == "close"
        error = json.loads(response.body)["error"]
        assert error["code"] == "body_timeout"
        assert "0.3 s" in error["message"]
        assert_still_serving(client)


def test_no_upload_is_read_once_the_queue_is_full(tiny_checkpoint: Path, gate: Gate) -> None:
    settings = make_settings(tiny_checkpoint, max_queue=1, max_batch_size=1)
    with serving(settings) as client, ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(infer, client, jpeg_bytes(seed=1))
        wait_until(lambda: gate.batches == [1])
        headers, _ = multipart(jpeg_bytes())

        async def never_read() -> dict:
            raise AssertionError("the body of a shed request was read")

        response = call(client, headers, never_read)
        assert response.status == 503
        assert json.loads(response.body)["error"]["code"] == "overloaded"
        gate.opened.set()
        assert running.result().status_code == 200
