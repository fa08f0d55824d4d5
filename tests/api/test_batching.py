"""Micro-batching through the app: routing, sharing, and per-request failures."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.api.conftest import assert_error, infer, jpeg_bytes, make_settings, started_client


@pytest.fixture
def batching_client(tiny_checkpoint: Path):
    # A wide wait window so concurrent test requests reliably meet in one batch; no exact
    # cache, so the same image sent twice is judged twice.
    settings = make_settings(
        tiny_checkpoint, max_batch_size=8, batch_wait_ms=200, cache_enabled=False
    )
    yield from started_client(settings)


def test_concurrent_requests_share_forward_passes_and_get_their_own_results(
    batching_client,
) -> None:
    images = [jpeg_bytes(160 + 8 * i, 120, seed=i) for i in range(8)]
    alone = [infer(batching_client, image).json() for image in images]  # one at a time
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda image: infer(batching_client, image), images))
    assert all(response.status_code == 200 for response in together)
    bodies = [response.json() for response in together]
    for single, batched in zip(alone, bodies, strict=True):
        # Same image, same answer, whichever batch it rode in (batched convolutions may
        # pick other kernels: float32 rounding only).
        assert batched["fake_prob"] == pytest.approx(single["fake_prob"], abs=1e-5)
    assert max(body["batch_size"] for body in bodies) >= 2
    assert len({body["request_id"] for body in bodies}) == 8


def test_a_corrupt_image_fails_only_its_own_request(batching_client) -> None:
    uploads = [jpeg_bytes(seed=i) for i in range(5)] + [b"corrupt bytes", jpeg_bytes()[:300]]
    with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
        responses = list(pool.map(lambda data: infer(batching_client, data), uploads))
    assert [r.status_code for r in responses[:5]] == [200] * 5
    for response in responses[5:]:
        assert_error(response, 422, "invalid_image")


def test_batch_size_one_serves_every_request_alone(tiny_checkpoint: Path) -> None:
    for client in started_client(make_settings(tiny_checkpoint, max_batch_size=1)):
        with ThreadPoolExecutor(max_workers=4) as pool:
            responses = list(pool.map(lambda i, c=client: infer(c, jpeg_bytes(seed=i)), range(4)))
        assert [r.json()["batch_size"] for r in responses] == [1, 1, 1, 1]


def test_batch_metrics_are_exported(batching_client) -> None:
    infer(batching_client, jpeg_bytes())
    text = batching_client.get("/metrics").text
    assert "veracity_batch_size_count 1.0" in text
    assert "veracity_inference_seconds_count 1.0" in text
