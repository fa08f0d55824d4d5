"""Jobs survive the process: killed (SIGKILL) with jobs queued and running, or stopped
(SIGTERM) mid-job, a restarted server finishes every job, and each is recorded once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import API_KEY, Server, start_server
from tests.videofiles import write_video

HEADERS = {"X-API-Key": API_KEY}
# A short lease, so that a killed worker's job is claimed again within seconds.
ENV = {"VERACITY_JOB_LEASE_S": "5", "VERACITY_MAX_CONCURRENT_VIDEOS": "1"}


def submit(server: Server, videos: list[bytes]) -> list[str]:
    urls = []
    for video in videos:
        response = httpx.post(
            f"{server.base_url}/jobs/video",
            files={"file": ("v.mp4", video, "video/mp4")},
            params={"frames": 24},
            headers=HEADERS,
            timeout=30,
        )
        assert response.status_code == 202, response.text
        urls.append(response.json()["url"])
    return urls


def wait_all(server: Server, urls: list[str], seconds: float = 120) -> list[dict]:
    deadline = time.monotonic() + seconds
    jobs: list[dict] = []
    while time.monotonic() < deadline:
        jobs = [
            httpx.get(server.base_url + url, headers=HEADERS, timeout=10).json() for url in urls
        ]
        if all(job["status"] in ("done", "failed") for job in jobs):
            return jobs
        time.sleep(0.2)
    raise AssertionError(f"jobs did not end within {seconds} s: {jobs}")


def wait_running(server: Server, urls: list[str], seconds: float = 60) -> None:
    """Until the runner is inside the jobs: one running, or one done and another still to
    run (a loaded machine's polls can miss a job's short running state)."""
    deadline = time.monotonic() + seconds
    statuses: list[str] = []
    while time.monotonic() < deadline:
        statuses = [
            httpx.get(server.base_url + url, headers=HEADERS, timeout=10).json()["status"]
            for url in urls
        ]
        if "running" in statuses or ("done" in statuses and "queued" in statuses):
            return
        time.sleep(0.02)
    raise AssertionError(f"the jobs were never seen in progress: {statuses}")


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_jobs_finish_exactly_once_across_a_restart(
    tmp_path: Path, tiny_checkpoint: Path, stop_signal: signal.Signals
) -> None:
    # Three different files: the same file three times would be answered from the exact
    # cache after the first, in milliseconds, and a job might never be seen running.
    videos = [write_video(seconds=4.0 + 0.2 * i, fps=25, width=320, height=240) for i in range(3)]
    first = start_server(tmp_path, tiny_checkpoint, **ENV)
    try:
        first.wait_ready()
        urls = submit(first, videos)
        wait_running(first, urls)
        os.killpg(first.process.pid, stop_signal)
        first.process.wait(timeout=60)
    finally:
        first.stop()
    # The same data directory (the working directory's var/): the same SQLite store.
    second = start_server(tmp_path, tiny_checkpoint, **ENV)
    try:
        second.wait_ready()
        jobs = wait_all(second, urls)
        assert [job["status"] for job in jobs] == ["done"] * 3, jobs
        for job in jobs:
            assert job["result"]["frames_analysed"] == 24
            stored = httpx.get(
                f"{second.base_url}/predictions/{job['job_id']}", headers=HEADERS, timeout=10
            )
            assert stored.status_code == 200
        listed = httpx.get(
            f"{second.base_url}/predictions", headers=HEADERS, params={"limit": 100}, timeout=10
        ).json()["items"]
        # One record per job, however often it was started.
        assert sorted(item["prediction_id"] for item in listed) == sorted(
            job["job_id"] for job in jobs
        )
        if stop_signal == signal.SIGTERM:
            # Handed back on shutdown: a restart does not count it as another attempt.
            assert all(job["attempts"] == 1 for job in jobs), jobs
    finally:
        second.stop()
