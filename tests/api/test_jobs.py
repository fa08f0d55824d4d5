"""Asynchronous jobs through the API, on SQLite and a real PostgreSQL: 202 and a URL, a
result equal to the synchronous answer, verdicts stored, isolation, signed webhooks with
retries."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import API_KEY, OTHER_KEY, assert_error, jpeg_bytes, make_settings, serving
from tests.videofiles import write_video
from veracity.api.auth import key_id
from veracity.jobs.webhooks import key_secret, verify_signature

SECRET = "webhook-secret-0123456789"  # noqa: S105 (a test secret)


def wait_for(client, url: str, *, key: str = API_KEY, seconds: float = 60) -> dict:
    """Poll a job until it ends (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = client.get(url, headers={"X-API-Key": key}).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"job did not end within {seconds} s: {body}")


def post_video_job(client, data: bytes, key: str = API_KEY, **params):
    return client.post(
        "/jobs/video",
        files={"file": ("v.mp4", data, "video/mp4")},
        params=params,
        headers={"X-API-Key": key},
    )


@pytest.fixture
def job_client(tiny_checkpoint: Path, database_url: str):
    settings = make_settings(
        tiny_checkpoint,
        database_url=database_url,
        # Synchronous video requests stop at 1 s; jobs take up to 60 s.
        video_max_duration_s=1,
        job_video_max_duration_s=60,
    )
    with serving(settings) as client:
        yield client


def test_a_video_too_long_to_answer_at_once_is_analysed_as_a_job(job_client) -> None:
    video = write_video(seconds=3.0, fps=10)
    assert_error(
        job_client.post(
            "/infer/video",
            files={"file": ("v.mp4", video, "video/mp4")},
            headers={"X-API-Key": API_KEY},
        ),
        413,
        "video_too_large",
    )
    response = post_video_job(job_client, video, frames=6)
    assert response.status_code == 202, response.text
    created = response.json()
    assert response.headers["location"] == created["url"] == f"/jobs/{created['job_id']}"
    assert created["status"] in ("queued", "running", "done")
    job = wait_for(job_client, created["url"])
    assert job["status"] == "done", job
    assert job["error"] is None
    assert job["attempts"] == 1
    result = job["result"]
    assert result["frames_analysed"] == 6
    assert len(result["timeline"]) == 6
    assert result["prediction_id"] == created["job_id"]
    assert result["stored"] is True
    stored = job_client.get(
        f"/predictions/{created['job_id']}", headers={"X-API-Key": API_KEY}
    ).json()
    assert stored["kind"] == "video"
    assert stored["result"]["timeline"] == result["timeline"]


def test_a_batch_job_answers_each_item_on_its_own(job_client) -> None:
    files = [
        ("files", ("a.jpg", jpeg_bytes(seed=1), "image/jpeg")),
        ("files", ("bad.jpg", b"not an image", "image/jpeg")),
        ("files", ("c.jpg", jpeg_bytes(seed=2), "image/jpeg")),
    ]
    response = job_client.post("/jobs/batch", files=files, headers={"X-API-Key": API_KEY})
    assert response.status_code == 202, response.text
    job = wait_for(job_client, response.json()["url"])
    assert job["status"] == "done"
    result = job["result"]
    assert (result["succeeded"], result["failed"]) == (2, 1)
    assert result["items"][1]["error"]["code"] == "invalid_image"
    first = result["items"][0]["result"]
    assert first["prediction_id"] == f"{job['job_id']}-0"
    stored = job_client.get(
        f"/predictions/{first['prediction_id']}", headers={"X-API-Key": API_KEY}
    )
    assert stored.status_code == 200
    assert stored.json()["fake_prob"] == pytest.approx(first["fake_prob"])


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"\x00" * 100, 415, "unsupported_video_format"),
        (write_video(seconds=0.5)[:300], 422, "invalid_video"),
        (write_video(seconds=0.5, audio=True, extra_video_streams=9), 413, "video_too_large"),
    ],
    ids=["not-a-video", "truncated", "too-many-streams"],
)
def test_a_file_the_job_would_refuse_is_refused_before_it_is_queued(
    job_client, data: bytes, status: int, code: str
) -> None:
    assert_error(post_video_job(job_client, data), status, code)


def test_a_key_sees_only_its_own_jobs(job_client) -> None:
    created = post_video_job(job_client, write_video(seconds=1.0), frames=2).json()
    assert_error(job_client.get(created["url"], headers={"X-API-Key": OTHER_KEY}), 404, "not_found")
    assert_error(
        job_client.get("/jobs/" + "0" * 32, headers={"X-API-Key": API_KEY}), 404, "not_found"
    )
    response = job_client.get("/jobs/..%2Fetc", headers={"X-API-Key": API_KEY})
    assert response.status_code in (404, 422)
    assert job_client.get(created["url"]).status_code == 401
    wait_for(job_client, created["url"])


def test_webhooks_need_a_secret_and_a_plain_http_url(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint)) as client:
        response = post_video_job(client, write_video(), webhook_url="https://example.com/h")
        assert_error(response, 400, "bad_request")
    with serving(make_settings(tiny_checkpoint, webhook_secret=SECRET)) as client:
        for url in ("ftp://example.com/h", "https://user:pw@example.com/h", "/relative"):
            assert_error(post_video_job(client, write_video(), webhook_url=url), 400, "bad_request")


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers ``status`` (it can be changed)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def webhook_settings(tiny_checkpoint: Path, **overrides):
    values = {
        "webhook_secret": SECRET,
        "webhook_allow_private": True,  # the receiver is on loopback
        "webhook_backoff_s": 0.05,
    }
    return make_settings(tiny_checkpoint, **(values | overrides))


def wait_webhook(client, url: str, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = client.get(url, headers={"X-API-Key": API_KEY})
        job = response.json()
        # A poll may meet a slow store (503 store_unavailable, Retry-After): poll again.
        if response.status_code == 503 and job["error"]["code"] == "store_unavailable":
            time.sleep(0.05)
            continue
        if job["webhook"]["status"] in ("delivered", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"webhook not settled within {seconds} s: {job}")


def test_a_finished_job_calls_its_webhook_signed(tiny_checkpoint: Path, receiver) -> None:
    with serving(webhook_settings(tiny_checkpoint)) as client:
        created = post_video_job(
            client, write_video(seconds=1.0), frames=2, webhook_url=receiver.url
        ).json()
        job = wait_webhook(client, created["url"])
    assert job["webhook"] == {
        "url": receiver.url,
        "status": "delivered",
        "attempts": 1,
        "last_error": None,
    }
    ((headers, body),) = receiver.calls
    # Signed with the creating key's own secret, not the deployment's.
    secret = key_secret(SECRET, key_id(API_KEY))
    assert verify_signature(secret, headers["Veracity-Signature"], body)
    assert not verify_signature(SECRET, headers["Veracity-Signature"], body)
    assert not verify_signature(secret, headers["Veracity-Signature"], body + b" ")
    payload = json.loads(body)
    assert payload["job_id"] == created["job_id"]
    assert payload["status"] == "done"
    assert payload["result"]["timeline"] == job["result"]["timeline"]
    assert headers["Veracity-Event-Id"] == created["job_id"]


def test_a_webhook_receiver_that_fails_is_retried_then_given_up(
    tiny_checkpoint: Path, receiver
) -> None:
    receiver.status = 503
    with serving(webhook_settings(tiny_checkpoint, webhook_attempts=3)) as client:
        created = post_video_job(
            client, write_video(seconds=1.0), frames=2, webhook_url=receiver.url
        ).json()
        job = wait_webhook(client, created["url"])
        assert job["status"] == "done"  # the job's own result is unaffected
        assert job["webhook"]["status"] == "failed"
        assert job["webhook"]["attempts"] == 3
        assert "503" in job["webhook"]["last_error"]
        assert len(receiver.calls) == 3
        metrics = client.get("/metrics").text
        assert 'veracity_webhooks_total{outcome="failed"} 1.0' in metrics
        assert 'veracity_webhooks_total{outcome="retry"} 2.0' in metrics


def test_a_receiver_that_comes_back_gets_the_webhook(tiny_checkpoint: Path, receiver) -> None:
    receiver.status = 500
    with serving(webhook_settings(tiny_checkpoint, webhook_backoff_s=0.5)) as client:
        created = post_video_job(
            client, write_video(seconds=1.0), frames=2, webhook_url=receiver.url
        ).json()
        deadline = time.monotonic() + 30
        while not receiver.calls and time.monotonic() < deadline:
            time.sleep(0.05)
        receiver.status = 200
        job = wait_webhook(client, created["url"])
    assert job["webhook"]["status"] == "delivered"
    assert job["webhook"]["attempts"] >= 2


def test_private_addresses_are_refused_unless_allowed(tiny_checkpoint: Path, receiver) -> None:
    settings = webhook_settings(tiny_checkpoint, webhook_allow_private=False, webhook_attempts=1)
    with serving(settings) as client:
        created = post_video_job(
            client, write_video(seconds=1.0), frames=2, webhook_url=receiver.url
        ).json()
        job = wait_webhook(client, created["url"])
    assert job["webhook"]["status"] == "failed"
    assert "non-public address" in job["webhook"]["last_error"]
    assert receiver.calls == []
