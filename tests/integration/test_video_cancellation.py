"""A video request that ends early (a hang-up, its deadline, a shutdown) while a frame is
being decoded must not crash the process, and a video whose frames outgrow their declared
size must not take the memory of the frames it lies about."""

from __future__ import annotations

import contextlib
import random
import socket
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import API_KEY, Server, start_server
from tests.integration.test_jobs_restart import wait_all, wait_running
from tests.videofiles import write_decode_heavy_clip, write_size_switching_video

HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def clip_720p() -> bytes:
    return write_decode_heavy_clip()


def video_request(video: bytes) -> bytes:
    boundary = "vvv"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + video
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        "POST /infer/video HTTP/1.1\r\nHost: x\r\n"
        f"X-API-Key: {API_KEY}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def hang_up_after(server: Server, request: bytes, seconds: float) -> None:
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        time.sleep(seconds)  # the upload is in; the server is decoding frames


def assert_alive(server: Server) -> None:
    assert server.process.poll() is None, f"server died: {server.log_path.read_text()[-3000:]}"
    assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200


def post_video(server: Server, video: bytes, path: str = "/infer/video") -> httpx.Response:
    return httpx.post(
        f"{server.base_url}{path}",
        files={"file": ("v.mp4", video, "video/mp4")},
        headers=HEADERS,
        timeout=120,
    )


def test_clients_hanging_up_mid_video_do_not_crash_the_server(
    server: Server, clip_720p: bytes
) -> None:
    request = video_request(clip_720p)
    rng = random.Random(0)
    for _ in range(5):
        hang_up_after(server, request, rng.uniform(0.6, 2.0))
        time.sleep(0.3)  # the cancelled request closes its file meanwhile
        assert_alive(server)
    # The video still gets a full answer after all that.
    response = post_video(server, clip_720p)
    assert response.status_code == 200, response.text
    assert server.stop() == 0


def test_video_deadlines_answer_504_and_the_server_keeps_serving(
    tmp_path: Path, tiny_checkpoint: Path, clip_720p: bytes
) -> None:
    # Well inside the clip's decoding (about 1.3 s on an idle machine, 500 frames forward).
    server = start_server(tmp_path, tiny_checkpoint, VERACITY_VIDEO_TIMEOUT_S="0.5")
    try:
        server.wait_ready()
        for _ in range(3):
            response = post_video(server, clip_720p)
            assert response.status_code == 504, response.text
            assert response.json()["error"]["code"] == "deadline_exceeded"
            assert_alive(server)
    finally:
        assert server.stop() == 0


def test_sigterm_during_a_video_job_hands_it_back_without_crashing(
    tmp_path: Path, tiny_checkpoint: Path, clip_720p: bytes
) -> None:
    # No exact cache: the same clip again would be answered from it in milliseconds once
    # one job is done, and the second attempt might never see a job running.
    env = {"VERACITY_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    env["VERACITY_CACHE_ENABLED"] = "false"
    job_paths = []
    for attempt in range(2):
        server = start_server(tmp_path, tiny_checkpoint, **env)
        try:
            server.wait_ready()
            # Three jobs, each about 1.3 s of decoding: one of them is inside its frame loop
            # when the signal comes, however fast the machine.
            for _ in range(3):
                response = post_video(server, clip_720p, "/jobs/video")
                assert response.status_code == 202, response.text
                job_paths.append(response.json()["url"])
            wait_running(server, job_paths)
            time.sleep(0.3 + 0.4 * attempt)
        finally:
            status = server.stop()
        assert status == 0, server.log_path.read_text()[-3000:]
        # Never left running: handed back at shutdown (or finished while the server drained).
        with contextlib.closing(sqlite3.connect(tmp_path / "store.db")) as db:
            statuses = {status for (status,) in db.execute("SELECT status FROM jobs")}
        assert statuses <= {"queued", "done"}, server.log_path.read_text()[-4000:]
    # A new replica finishes every job that was running when its predecessor stopped.
    server = start_server(tmp_path, tiny_checkpoint, **env)
    try:
        server.wait_ready()
        jobs = wait_all(server, job_paths, seconds=240)
        assert [job["status"] for job in jobs] == ["done"] * 6
    finally:
        server.stop()


def test_a_video_whose_frames_outgrow_their_declared_size_is_refused_in_bounded_memory(
    server: Server,
) -> None:
    video = write_size_switching_video(first=(320, 240), then=(8192, 8192), frames=4)
    status = Path(f"/proc/{server.process.pid}/status")

    def resident_mb() -> float:
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        return int(fields["VmHWM"].split()[0]) / 1024

    # A small video first, so the decoder's own start-up cost is already in the peak.
    small = write_size_switching_video(first=(320, 240), then=(320, 240), frames=4)
    before = post_video(server, small)
    assert before.status_code == 200, before.text
    peak_before = resident_mb()
    response = post_video(server, video)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "video_too_large"
    assert "8192x8192" in error["message"]
    # One 8192x8192 frame alone is 96 MB of YUV, with its references several times that.
    rise = resident_mb() - peak_before
    assert rise < 64, f"peak RSS rose by {rise:.0f} MB"
    assert_alive(server)
