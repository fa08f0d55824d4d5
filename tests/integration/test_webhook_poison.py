"""A job whose webhook_url cannot be delivered to (a port above 65535, a DNS label over 63
characters; written into the store directly, as creation now refuses them) is given up with
its reason, while the same server process goes on delivering other jobs' webhooks and still
stops cleanly on SIGTERM, handing its running job back."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.orm import Session

from tests.api.test_jobs import Receiver
from tests.integration.conftest import API_KEY, Server, start_server
from tests.videofiles import write_video
from veracity.api.auth import key_id
from veracity.store.database import create_database_engine, resolve_database_url
from veracity.store.schema import JobRow

HEADERS = {"X-API-Key": API_KEY}
POISON = [
    "http://127.0.0.1:99999/hook",  # raised from the connection itself, before the fix
    "http://example.com:99999/",
    "http://" + "a" * 64 + ".example.com/hook",
]
ENV = {
    "VERACITY_WEBHOOK_SECRET": "webhook-secret-0123456789",
    "VERACITY_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on loopback
    "VERACITY_WEBHOOK_BACKOFF_S": "0.2",
    "VERACITY_MAX_CONCURRENT_VIDEOS": "1",
}


def inject_poison(tmp_path: Path) -> list[str]:
    """Finished jobs with a poison webhook due, older than any the test creates, so the
    delivery loop meets them first."""
    engine = create_database_engine(resolve_database_url(None, tmp_path / "var"), timeout_s=10)
    past = datetime.now(UTC) - timedelta(minutes=5)
    ids = [f"poison{index}" for index in range(len(POISON))]
    try:
        with Session(engine) as session:
            for index, (job_id, url) in enumerate(zip(ids, POISON, strict=True)):
                session.add(
                    JobRow(
                        id=job_id,
                        request_id=job_id,
                        key_id=key_id(API_KEY),
                        kind="batch",
                        status="done",
                        params={},
                        created_at=past,
                        finished_at=past,
                        attempts=1,
                        result={},
                        webhook_url=url,
                        webhook_status="pending",
                        webhook_attempts=0,
                        webhook_next_at=past + timedelta(seconds=index),
                    )
                )
            session.commit()
    finally:
        engine.dispose()
    return ids


def job_status(tmp_path: Path, job_id: str) -> str:
    engine = create_database_engine(resolve_database_url(None, tmp_path / "var"), timeout_s=10)
    try:
        with Session(engine) as session:
            row = session.get(JobRow, job_id)
            assert row is not None
            return row.status
    finally:
        engine.dispose()


def get_job(server: Server, job_id: str) -> dict:
    return httpx.get(f"{server.base_url}/jobs/{job_id}", headers=HEADERS, timeout=10).json()


def submit(server: Server, video: bytes, **params) -> str:
    response = httpx.post(
        f"{server.base_url}/jobs/video",
        files={"file": ("v.mp4", video, "video/mp4")},
        params=params,
        headers=HEADERS,
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def wait_for(what, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


def test_a_poison_webhook_url_stops_neither_deliveries_nor_shutdown(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    receiver = Receiver()
    server = start_server(tmp_path, tiny_checkpoint, **ENV)
    try:
        server.wait_ready()
        poison = inject_poison(tmp_path)
        # The loop meets the poison first (and, before the fix, died of it).
        wait_for(lambda: all(get_job(server, p)["webhook"]["attempts"] >= 1 for p in poison))
        job_id = submit(server, write_video(seconds=1.0), frames=2, webhook_url=receiver.url)
        job = wait_for(
            lambda: (j := get_job(server, job_id))["webhook"]["status"] == "delivered" and j
        )
        assert len(receiver.calls) == 1
        assert job_id.encode() in receiver.calls[0][1]
        for p in poison:
            webhook = get_job(server, p)["webhook"]
            # Given up at once (retrying cannot help), with the reason on the record.
            assert webhook["status"] == "failed", webhook
            assert webhook["attempts"] == 1
            assert webhook["last_error"].startswith("given up: webhook_url")
        assert job["status"] == "done"

        # SIGTERM with a job running: a clean stop that hands the job back.
        video = write_video(seconds=4.0, fps=25, width=320, height=240)
        running = submit(server, video, frames=24)
        wait_for(lambda: get_job(server, running)["status"] != "queued", seconds=60)
        os.killpg(server.process.pid, signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
    finally:
        server.stop()
        receiver.close()
    text = server.log_path.read_text()
    assert "Application shutdown failed" not in text
    assert "Traceback" not in text
    messages = [record.get("message") for record in server.logs()]
    assert "webhook delivery failed" not in messages  # nothing escaped the sender
    # Handed back at shutdown (or finished before it): never left "running".
    assert job_status(tmp_path, running) in ("queued", "done")
