"""A real server whose versions load only when an admin asks: a job naming an unloaded
version is refused at submission, and one already queued (written into the store, as if
queued before an admin unloaded its version) fails with its reason instead of holding the
queue; other jobs pass it. Jobs can be cancelled; the queue's waiting uploads are bounded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from tests.api.conftest import jpeg_bytes
from tests.conftest import write_tiny_checkpoint
from tests.integration.conftest import API_KEY, Server, start_server
from tests.integration.test_jobs_restart import wait_all, wait_running
from tests.videofiles import write_decode_heavy_clip
from veracity.api.auth import key_id
from veracity.store.database import create_database_engine, resolve_database_url
from veracity.store.schema import JobInputRow, JobRow

HEADERS = {"X-API-Key": API_KEY}
OTHER_KEY = "other-integration-key-0123456789"
ONE_IMAGE = len(jpeg_bytes(seed=0))


def wait_ended(server: Server, url: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    job: dict = {}
    while time.monotonic() < deadline:
        job = httpx.get(server.base_url + url, headers=HEADERS, timeout=10).json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job did not end within {seconds} s: {job}")


@pytest.fixture
def server(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Server]:
    root = tmp_path / "models"
    write_tiny_checkpoint(root / "tiny" / "1" / "model.safetensors", seed=0)
    write_tiny_checkpoint(root / "tiny" / "2" / "model.safetensors", seed=1)
    server = start_server(
        tmp_path,
        tiny_checkpoint,
        VERACITY_MODEL_REPOSITORY=str(root),
        VERACITY_DEFAULT_MODEL="tiny",
        VERACITY_MODEL_LOAD_ON_DEMAND="false",
        VERACITY_BACKEND="torch",
        VERACITY_API_KEYS=f"{API_KEY},{OTHER_KEY}",
        # A video job of 1,000 samples keeps the one job worker busy for seconds.
        VERACITY_VIDEO_MAX_FRAMES="1024",
        # Room for the long video's upload and one small batch job's, not two more.
        VERACITY_JOB_QUEUE_MAX_MB=str((len(write_decode_heavy_clip()) + 1.5 * ONE_IMAGE) / 2**20),
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def batch_files(count: int = 1) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.jpg", jpeg_bytes(seed=i), "image/jpeg")) for i in range(count)]


def queue_job_for_version(tmp_path: Path, version: str) -> str:
    """A batch job pinned to ``version``, queued a minute ago (first in line)."""
    engine = create_database_engine(resolve_database_url(None, tmp_path / "var"), timeout_s=10)
    past = datetime.now(UTC) - timedelta(minutes=1)
    try:
        with Session(engine) as session:
            session.add(
                JobRow(
                    id="pinned1",
                    request_id="pinned1",
                    key_id=key_id(API_KEY),
                    kind="batch",
                    status="queued",
                    params={"robustness_check": None, "model": None, "model_version": version},
                    created_at=past,
                    attempts=0,
                    webhook_attempts=0,
                )
            )
            session.flush()
            session.add(
                JobInputRow(job_id="pinned1", position=0, filename="a.jpg", data=jpeg_bytes())
            )
            session.commit()
    finally:
        engine.dispose()
    return "/jobs/pinned1"


def test_a_job_naming_an_unloaded_version_is_refused_or_failed_and_others_pass(
    server: Server, tmp_path: Path
) -> None:
    refused = httpx.post(
        f"{server.base_url}/jobs/batch",
        params={"model_version": "1"},
        files=batch_files(),
        headers=HEADERS,
        timeout=30,
    )
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "not_ready"
    assert "VERACITY_MODEL_LOAD_ON_DEMAND" in refused.json()["error"]["message"]

    pinned = queue_job_for_version(tmp_path, "1")
    created = httpx.post(
        f"{server.base_url}/jobs/batch", files=batch_files(), headers=HEADERS, timeout=30
    )
    assert created.status_code == 202, created.text
    stuck, other = wait_all(server, [pinned, created.json()["url"]], seconds=60)
    assert stuck["status"] == "failed"
    assert stuck["attempts"] == 1  # failed at its first start, not handed back again and again
    assert stuck["error"]["code"] == "model_not_loaded"
    assert "tiny/1 is not loaded" in stuck["error"]["message"]
    assert other["status"] == "done"


def test_jobs_can_be_cancelled_and_the_queue_holds_a_bounded_amount_of_uploads(
    server: Server,
) -> None:
    # A video that keeps the one job worker busy (every one of its 500 frames judged), so
    # that the next jobs wait in the queue.
    running = httpx.post(
        f"{server.base_url}/jobs/video",
        params={"frames": 1000},
        files={"file": ("v.mp4", write_decode_heavy_clip(), "video/mp4")},
        headers=HEADERS,
        timeout=30,
    )
    assert running.status_code == 202, running.text
    wait_running(server, [running.json()["url"]])
    waiting = httpx.post(
        f"{server.base_url}/jobs/batch", files=batch_files(), headers=HEADERS, timeout=30
    )
    assert waiting.status_code == 202, waiting.text
    # The queue's uploads are bounded (VERACITY_JOB_QUEUE_MAX_MB): the next is refused.
    full = httpx.post(
        f"{server.base_url}/jobs/batch", files=batch_files(2), headers=HEADERS, timeout=30
    )
    assert full.status_code == 503, full.text
    assert full.json()["error"]["code"] == "overloaded"
    assert "VERACITY_JOB_QUEUE_MAX_MB" in full.json()["error"]["message"]
    assert "retry-after" in full.headers

    cancel_url = f"{server.base_url}{waiting.json()['url']}/cancel"
    cancelled = httpx.post(cancel_url, headers=HEADERS, timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["code"] == "cancelled"
    # Cancelling again answers the same; another key finds no such job.
    assert httpx.post(cancel_url, headers=HEADERS, timeout=30).json()["status"] == "cancelled"
    other_key = httpx.post(cancel_url, headers={"X-API-Key": OTHER_KEY}, timeout=30)
    assert other_key.status_code == 404
    # A cancelled job's uploads leave the queue: there is room again.
    again = httpx.post(
        f"{server.base_url}/jobs/batch", files=batch_files(), headers=HEADERS, timeout=30
    )
    assert again.status_code == 202, again.text

    # The running video stops at once when cancelled; the worker goes on to the next job.
    stop = httpx.post(f"{server.base_url}{running.json()['url']}/cancel", headers=HEADERS)
    assert stop.status_code == 200
    assert stop.json()["status"] == "cancelled"
    assert wait_ended(server, again.json()["url"])["status"] == "done"
    video_job = wait_ended(server, running.json()["url"])
    assert video_job["status"] == "cancelled"
    assert video_job["result"] is None
    logs = [line.get("message") for line in server.logs()]
    assert "job stopped: cancelled or claimed elsewhere" in logs
    # An ended job keeps its outcome.
    ended = httpx.post(f"{server.base_url}{again.json()['url']}/cancel", headers=HEADERS)
    assert ended.status_code == 409
    assert ended.json()["error"]["code"] == "job_ended"
