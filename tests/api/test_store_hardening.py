"""The results store against hostile and unlucky clients, on SQLite and a real PostgreSQL:
prediction IDs are the service's own (a reused X-Request-ID stores every verdict), the exact
cache answers a key only from its own predictions and only for the version asked for, and
a job created again with its Idempotency-Key is the same job."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.api.conftest import (
    ADMIN_KEY,
    API_KEY,
    OTHER_KEY,
    infer,
    jpeg_bytes,
    make_settings,
    serving,
)
from tests.conftest import write_tiny_checkpoint
from tests.videofiles import write_video

SHARED_ID = "order-42.retry"


@pytest.fixture
def store_client(tiny_checkpoint: Path, database_url: str):
    settings = make_settings(tiny_checkpoint, database_url=database_url, admin_api_keys=ADMIN_KEY)
    with serving(settings) as client:
        yield client


def read(client, prediction_id: str, key: str = API_KEY) -> dict:
    response = client.get(f"/predictions/{prediction_id}", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    return response.json()


def store_failures(client) -> list[str]:
    return [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("veracity_store_failures_total{")
    ]


def test_a_request_id_another_key_used_first_still_stores_this_keys_verdicts(
    store_client,
) -> None:
    headers = {"X-Request-ID": SHARED_ID}
    theirs = infer(store_client, jpeg_bytes(seed=1), key=OTHER_KEY, headers=headers).json()
    mine = infer(store_client, jpeg_bytes(seed=2), headers=headers).json()
    retry = infer(store_client, jpeg_bytes(seed=2), headers=headers).json()
    batch = store_client.post(
        "/infer/batch",
        files=[("files", ("a.jpg", jpeg_bytes(seed=3), "image/jpeg"))] * 2,
        headers={"X-API-Key": API_KEY} | headers,
    ).json()
    answers = [theirs, mine, retry] + [item["result"] for item in batch["items"]]
    assert all(answer["stored"] is True for answer in answers), answers
    assert all(answer["request_id"] == SHARED_ID for answer in answers)
    assert len({answer["prediction_id"] for answer in answers}) == len(answers)
    # Each key reads its own, and only its own.
    assert read(store_client, theirs["prediction_id"], OTHER_KEY)["request_id"] == SHARED_ID
    assert read(store_client, mine["prediction_id"])["fake_prob"] == mine["fake_prob"]
    gone = store_client.get(
        f"/predictions/{theirs['prediction_id']}", headers={"X-API-Key": API_KEY}
    )
    assert gone.status_code == 404
    # The request ID still finds what the request made, per key.
    listed = store_client.get(
        "/predictions", params={"request_id": SHARED_ID}, headers={"X-API-Key": API_KEY}
    ).json()["items"]
    assert sorted(item["prediction_id"] for item in listed) == sorted(
        answer["prediction_id"] for answer in answers[1:]
    )
    assert store_failures(store_client) == []


def test_the_cache_never_answers_from_another_keys_predictions(store_client) -> None:
    data = jpeg_bytes(seed=4)
    first = infer(store_client, data).json()
    other = infer(store_client, data, key=OTHER_KEY).json()
    assert other["cached"] is False
    assert read(store_client, other["prediction_id"], OTHER_KEY)["cached_from"] is None
    # Its own repeat is a hit, naming its own earlier prediction.
    again = infer(store_client, data, key=OTHER_KEY).json()
    assert again["cached"] is True
    repeated = read(store_client, again["prediction_id"], OTHER_KEY)
    assert repeated["cached_from"] == other["prediction_id"]
    assert first["prediction_id"] not in str(repeated)


def test_versions_with_the_same_weights_answer_each_as_itself(
    tmp_path: Path, tiny_checkpoint: Path, database_url: str
) -> None:
    repository = tmp_path / "repository"
    write_tiny_checkpoint(repository / "tiny" / "1" / "model.safetensors", seed=0)
    shutil.copytree(repository / "tiny" / "1", repository / "tiny" / "4")
    settings = make_settings(
        tiny_checkpoint,
        database_url=database_url,
        model_repository=repository,
        default_model="tiny:1",
        backend="torch",
    )
    data = jpeg_bytes(seed=5)
    with serving(settings) as client:
        assert infer(client, data).json()["model_version"] == "1"
        answer = infer(client, data, params={"model_version": "4"}).json()
        assert (answer["model_version"], answer["cached"]) == ("4", False)
        assert read(client, answer["prediction_id"])["model_version"] == "4"
        again = infer(client, data, params={"model_version": "4"}).json()
        assert (again["model_version"], again["cached"]) == ("4", True)


def test_a_job_sent_again_with_its_idempotency_key_is_the_same_job(store_client) -> None:
    def post(key: str, idempotency_key: str):
        return store_client.post(
            "/jobs/batch",
            files=[("files", ("a.jpg", jpeg_bytes(seed=6), "image/jpeg"))],
            headers={"X-API-Key": key, "Idempotency-Key": idempotency_key},
        )

    first = post(API_KEY, "upload-7f3a")
    again = post(API_KEY, "upload-7f3a")
    theirs = post(OTHER_KEY, "upload-7f3a")
    assert [r.status_code for r in (first, again, theirs)] == [202, 202, 202]
    assert again.json()["job_id"] == first.json()["job_id"]
    assert theirs.json()["job_id"] != first.json()["job_id"]

    bad = post(API_KEY, "not ok")
    assert bad.status_code == 422
    # The job runs once.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = store_client.get(first.json()["url"], headers={"X-API-Key": API_KEY}).json()
        if job.get("status") in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "done", job
    assert job["attempts"] == 1


def test_a_repeated_job_is_answered_before_its_body_is_read(store_client) -> None:
    def post(data: bytes):
        return store_client.post(
            "/jobs/video",
            files={"file": ("v.mp4", data, "video/mp4")},
            headers={"X-API-Key": API_KEY, "Idempotency-Key": "video-1"},
        )

    first = post(write_video(seconds=1.0))
    assert first.status_code == 202, first.text
    # Bytes the route would refuse (415) if it read them: the repeat never gets that far.
    repeat = post(b"\x00" * 100)
    assert repeat.status_code == 202, repeat.text
    assert repeat.json()["job_id"] == first.json()["job_id"]
