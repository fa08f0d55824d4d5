"""The results store through the API, on SQLite and on a real PostgreSQL server: every
verdict recorded, read back, reviewed, erased, cached, and kept to its own key."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.api.conftest import (
    ADMIN_KEY,
    API_KEY,
    OTHER_KEY,
    assert_error,
    assert_still_serving,
    infer,
    jpeg_bytes,
    make_settings,
    serving,
)
from tests.videofiles import write_video
from veracity.store.database import resolve_database_url


@pytest.fixture
def store_client(tiny_checkpoint: Path, database_url: str):
    settings = make_settings(tiny_checkpoint, database_url=database_url, admin_api_keys=ADMIN_KEY)
    with serving(settings) as client:
        yield client


def get(client, prediction_id: str, key: str = API_KEY):
    return client.get(f"/predictions/{prediction_id}", headers={"X-API-Key": key})


def listing(client, key: str = API_KEY, **params):
    return client.get("/predictions", params=params, headers={"X-API-Key": key})


def feedback(client, prediction_id: str, body, key: str = API_KEY):
    return client.post(
        f"/predictions/{prediction_id}/feedback", json=body, headers={"X-API-Key": key}
    )


def test_every_verdict_is_recorded_with_what_an_auditor_needs(store_client) -> None:
    data = jpeg_bytes(seed=1)
    answer = infer(store_client, data).json()
    assert answer["stored"] is True
    assert answer["cached"] is False
    # The service's own ID; the request ID is kept beside it for correlation.
    assert len(answer["prediction_id"]) == 32
    assert answer["prediction_id"] != answer["request_id"]

    response = get(store_client, answer["prediction_id"])
    assert response.status_code == 200, response.text
    stored = response.json()
    assert stored["request_id"] == answer["request_id"]
    assert stored["kind"] == "image"
    assert stored["input_sha256"] == hashlib.sha256(data).hexdigest()
    assert stored["media_type"] == "image/jpeg"
    assert stored["size_bytes"] == len(data)
    assert stored["model_name"] == answer["model_name"] == "tiny"
    assert stored["model_version"] == answer["model_version"]
    assert len(stored["weights_sha256"]) == 64
    assert stored["verdict"] == answer["verdict"]
    assert stored["fake_prob"] == pytest.approx(answer["fake_prob"])
    assert stored["reasons"] == [reason["code"] for reason in answer["reasons"]]
    assert stored["key_id"] == hashlib.sha256(API_KEY.encode()).hexdigest()[:8]
    assert API_KEY not in response.text
    assert stored["review"] is None
    created = datetime.fromisoformat(stored["created_at"])
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)
    # The answer as sent, less what belongs to the request.
    assert stored["result"]["fake_prob"] == answer["fake_prob"]
    assert stored["result"]["timings_ms"] == answer["timings_ms"]
    assert "request_id" not in stored["result"]


def test_the_same_bytes_are_answered_from_the_store_without_inference(store_client) -> None:
    data = jpeg_bytes(seed=2)
    first = infer(store_client, data).json()
    second = infer(store_client, data).json()
    assert second["cached"] is True
    assert second["stored"] is True
    assert second["request_id"] != first["request_id"]
    for field in ("fake_prob", "real_prob", "verdict", "reasons", "model_version"):
        assert second[field] == first[field]
    cached_from = get(store_client, second["prediction_id"]).json()["cached_from"]
    assert cached_from == first["prediction_id"]
    # Other options make another answer: judged afresh.
    robust = infer(store_client, data, params={"robustness_check": "true"}).json()
    assert robust["cached"] is False
    assert robust["stability"] is not None
    metrics = store_client.get("/metrics").text
    assert 'veracity_cache_lookups_total{result="hit"} 1.0' in metrics
    # Another key's upload of the same bytes is judged afresh: a hit would tell it that
    # someone sent these bytes, and name that key's prediction.
    other = infer(store_client, data, key=OTHER_KEY).json()
    assert other["cached"] is False
    assert first["request_id"] not in str(other)
    assert get(store_client, other["prediction_id"], key=OTHER_KEY).json()["cached_from"] is None


def test_a_key_sees_only_its_own_predictions_and_admins_see_all(store_client) -> None:
    mine = infer(store_client, jpeg_bytes(seed=3)).json()["prediction_id"]
    theirs = infer(store_client, jpeg_bytes(seed=4), key=OTHER_KEY).json()["prediction_id"]

    # Another key's prediction is indistinguishable from a missing one.
    missing = assert_error(get(store_client, theirs), 404, "not_found")
    unknown = assert_error(get(store_client, "0" * 32), 404, "not_found")
    assert missing["message"].replace(theirs, "X") == unknown["message"].replace("0" * 32, "X")
    assert_error(feedback(store_client, theirs, {"label": "fake"}), 404, "not_found")
    response = store_client.delete(f"/predictions/{theirs}", headers={"X-API-Key": API_KEY})
    assert_error(response, 404, "not_found")
    assert get(store_client, theirs, key=OTHER_KEY).status_code == 200  # still there

    listed = [item["prediction_id"] for item in listing(store_client).json()["items"]]
    assert listed == [mine]
    assert_error(listing(store_client, key_id="abcdef12"), 403, "forbidden")

    everything = listing(store_client, key=ADMIN_KEY).json()["items"]
    assert {item["prediction_id"] for item in everything} == {mine, theirs}
    other_id = hashlib.sha256(OTHER_KEY.encode()).hexdigest()[:8]
    only = listing(store_client, key=ADMIN_KEY, key_id=other_id).json()["items"]
    assert [item["prediction_id"] for item in only] == [theirs]
    assert get(store_client, theirs, key=ADMIN_KEY).status_code == 200
    assert store_client.get("/predictions").status_code == 401


def test_reviewer_feedback_is_shown_beside_the_models_answer(store_client) -> None:
    prediction_id = infer(store_client, jpeg_bytes(seed=5)).json()["prediction_id"]
    response = feedback(store_client, prediction_id, {"label": "fake", "note": "splice at left"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["review"]["label"] == "fake"
    assert body["review"]["note"] == "splice at left"
    assert body["review"]["reviewer_key_id"] == hashlib.sha256(API_KEY.encode()).hexdigest()[:8]
    assert body["reviews"] == 1
    # An admin (a second reviewer) corrects it: the latest label is shown, both are kept.
    body = feedback(store_client, prediction_id, {"label": "real"}, key=ADMIN_KEY).json()
    assert body["review"]["label"] == "real"
    assert body["review"]["note"] is None
    assert body["reviews"] == 2
    assert get(store_client, prediction_id).json()["review"]["label"] == "real"
    assert get(store_client, prediction_id).json()["verdict"] in ("real", "fake", "inconclusive")


@pytest.mark.parametrize(
    "body",
    [
        {"label": "maybe"},
        {"note": "no label"},
        {"label": "fake", "note": "x" * 2001},
        {"label": "fake", "reviewer": "someone else"},
        ["fake"],
    ],
)
def test_malformed_feedback_is_refused(store_client, body) -> None:
    prediction_id = infer(store_client, jpeg_bytes(seed=6)).json()["prediction_id"]
    assert_error(feedback(store_client, prediction_id, body), 422, "validation_error")
    assert get(store_client, prediction_id).json()["reviews"] == 0


def test_erasure_removes_the_prediction_and_its_feedback(store_client) -> None:
    data = jpeg_bytes(seed=7)
    prediction_id = infer(store_client, data).json()["prediction_id"]
    feedback(store_client, prediction_id, {"label": "fake"})
    response = store_client.delete(f"/predictions/{prediction_id}", headers={"X-API-Key": API_KEY})
    assert response.status_code == 204
    assert_error(get(store_client, prediction_id), 404, "not_found")
    assert listing(store_client).json()["items"] == []
    # Erased answers are not replayed from the cache.
    assert infer(store_client, data).json()["cached"] is False


def test_listing_pages_by_cursor_newest_first_with_filters(store_client) -> None:
    ids = [infer(store_client, jpeg_bytes(seed=10 + i)).json()["prediction_id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = listing(store_client, **params).json()
        seen += [item["prediction_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))

    verdict = get(store_client, ids[0]).json()["verdict"]
    filtered = listing(store_client, verdict=verdict).json()["items"]
    assert ids[0] in [item["prediction_id"] for item in filtered]
    assert all(item["verdict"] == verdict for item in filtered)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert listing(store_client, since=future).json()["items"] == []
    assert len(listing(store_client, until=future).json()["items"]) == 5
    assert listing(store_client, model_version="9.9.9").json()["items"] == []


def test_a_review_queue_lists_the_unreviewed_oldest_first(store_client) -> None:
    ids = [infer(store_client, jpeg_bytes(seed=30 + i)).json()["prediction_id"] for i in range(4)]
    assert feedback(store_client, ids[1], {"label": "real"}).status_code == 200
    queue: list[str] = []
    cursor = None
    while True:
        params = {"reviewed": "false", "order": "oldest", "limit": 2}
        page = listing(store_client, **params | ({"cursor": cursor} if cursor else {})).json()
        queue += [item["prediction_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert queue == [ids[0], ids[2], ids[3]]
    reviewed = listing(store_client, reviewed="true").json()["items"]
    assert [item["prediction_id"] for item in reviewed] == [ids[1]]
    # A cursor is read only in the order it was given for.
    oldest = listing(store_client, order="oldest", limit=1).json()["next_cursor"]
    assert_error(listing(store_client, cursor=oldest), 400, "bad_request")
    newest = listing(store_client, limit=1).json()["next_cursor"]
    assert_error(listing(store_client, cursor=newest, order="oldest"), 400, "bad_request")


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"cursor": "not-a-cursor"}, 400, "bad_request"),
        ({"cursor": "W10"}, 400, "bad_request"),  # base64 of "[]"
        ({"cursor": "x" * 600}, 422, "validation_error"),
        ({"limit": 0}, 422, "validation_error"),
        ({"limit": 1000}, 422, "validation_error"),
        ({"since": "yesterday"}, 422, "validation_error"),
        ({"since": "2026-11-22T08:00:00"}, 400, "bad_request"),  # no time zone
        ({"verdict": "probably"}, 422, "validation_error"),
        ({"order": "random"}, 422, "validation_error"),
        ({"reviewed": "perhaps"}, 422, "validation_error"),
    ],
)
def test_bad_listing_parameters_get_a_clear_error(store_client, params, status, code) -> None:
    assert_error(listing(store_client, **params), status, code)


@pytest.mark.parametrize("prediction_id", ["x" * 81, "a%20b", "..%2F..%2Fetc", "id;drop"])
def test_malformed_ids_are_refused(store_client, prediction_id) -> None:
    response = store_client.get(f"/predictions/{prediction_id}", headers={"X-API-Key": API_KEY})
    assert response.status_code in (404, 422), response.text
    assert set(response.json()) == {"error"}
    assert_still_serving(store_client)


def test_batch_items_and_videos_are_recorded(store_client) -> None:
    files = [
        ("files", ("a.jpg", jpeg_bytes(seed=20), "image/jpeg")),
        ("files", ("b.txt", b"not an image", "text/plain")),
    ]
    batch = store_client.post("/infer/batch", files=files, headers={"X-API-Key": API_KEY}).json()
    first, second = batch["items"]
    assert first["result"]["stored"] is True
    assert second["error"]["code"] == "invalid_image"
    item = get(store_client, first["result"]["prediction_id"]).json()
    assert item["kind"] == "batch_item"
    assert item["request_id"] == batch["request_id"]
    # The failed item is not stored: the request made one prediction.
    made = listing(store_client, request_id=batch["request_id"]).json()["items"]
    assert [p["prediction_id"] for p in made] == [first["result"]["prediction_id"]]

    video = write_video(seconds=2.0, fps=10)
    answer = store_client.post(
        "/infer/video",
        files={"file": ("v.mp4", video, "video/mp4")},
        params={"frames": 4},
        headers={"X-API-Key": API_KEY},
    ).json()
    assert answer["stored"] is True
    stored = get(store_client, answer["prediction_id"]).json()
    assert stored["kind"] == "video"
    assert stored["media_type"] == "video/mp4"
    assert stored["input_sha256"] == hashlib.sha256(video).hexdigest()
    assert len(stored["result"]["timeline"]) == len(answer["timeline"]) == 4
    assert stored["result"]["timeline"][0]["timestamp_s"] == answer["timeline"][0]["timestamp_s"]
    again = store_client.post(
        "/infer/video",
        files={"file": ("v.mp4", video, "video/mp4")},
        params={"frames": 4},
        headers={"X-API-Key": API_KEY},
    ).json()
    assert again["cached"] is True
    assert again["timeline"] == answer["timeline"]


def test_a_stored_video_answer_is_not_reused_under_another_video_rule(
    tiny_checkpoint: Path, database_url: str
) -> None:
    video = write_video(seconds=2.0, fps=10)

    def judged(**rule) -> dict:
        settings = make_settings(tiny_checkpoint, database_url=database_url, **rule)
        with serving(settings) as client:
            return client.post(
                "/infer/video",
                files={"file": ("v.mp4", video, "video/mp4")},
                params={"frames": 4},
                headers={"X-API-Key": API_KEY},
            ).json()

    assert judged()["cached"] is False
    assert judged()["cached"] is True
    # Temporal contrast and the sustained run shape the verdict: another rule, another key.
    assert judged(video_contrast_min_step=0.5)["cached"] is False
    assert judged(video_run_min_frames=4)["cached"] is False


def test_a_failing_store_still_answers_and_says_the_verdict_was_not_stored(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = make_settings(tiny_checkpoint, database_url=url)
    with serving(settings) as client:
        assert infer(client, jpeg_bytes(seed=30)).json()["stored"] is True
        # The table disappears under the running service (a broken database).
        engine = create_engine(resolve_database_url(url, tmp_path))
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE feedback"))
            connection.execute(text("DROP TABLE predictions"))
        engine.dispose()
        response = infer(client, jpeg_bytes(seed=31))
        assert response.status_code == 200
        assert response.json()["stored"] is False
        assert response.json()["prediction_id"] is None
        assert response.json()["fake_prob"] is not None
        assert_error(get(client, response.json()["request_id"]), 503, "store_unavailable")
        assert 'veracity_store_failures_total{operation="record"}' in client.get("/metrics").text


def test_without_a_store_nothing_is_kept_and_the_routes_say_so(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint, store_enabled=False)) as client:
        answer = infer(client, jpeg_bytes(seed=40)).json()
        assert answer["stored"] is False
        assert answer["prediction_id"] is None
        assert_error(get(client, answer["request_id"]), 404, "not_found")


def test_verdicts_outlive_the_process(tiny_checkpoint: Path, tmp_path: Path) -> None:
    settings = make_settings(tiny_checkpoint, data_dir=tmp_path)
    with serving(settings) as client:
        prediction_id = infer(client, jpeg_bytes(seed=50)).json()["prediction_id"]
    assert (tmp_path / "veracity.db").exists()
    with serving(settings) as client:
        assert get(client, prediction_id).status_code == 200


def test_a_postgresql_outage_mid_load_loses_no_answer_and_recovers(
    tiny_checkpoint: Path, postgres_server
) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.pgserver import PostgresServer

    server = PostgresServer(postgres_server.bindir)  # its own server: this test stops it
    server.start()
    try:
        settings = make_settings(tiny_checkpoint, database_url=server.url(), store_timeout_s=2)
        with serving(settings) as client:
            outage = threading.Event()

            def client_loop(worker: int) -> list[tuple[int, dict]]:
                # A bounded load loop: 12 requests per client, distinct images.
                answers = []
                for i in range(12):
                    response = infer(client, jpeg_bytes(seed=1000 + 100 * worker + i))
                    answers.append((response.status_code, response.json()))
                    if worker == 0 and i == 3:
                        server.stop()  # the database goes away mid-run
                        outage.set()
                    if worker == 0 and i == 8:
                        server.start()  # and comes back
                return answers

            with ThreadPoolExecutor(max_workers=4) as pool:
                results = [a for answers in pool.map(client_loop, range(4)) for a in answers]
            assert outage.is_set()
            # Every request was answered by the model, database or not.
            assert all(status == 200 for status, _ in results)
            assert all(body["fake_prob"] is not None for _, body in results)
            stored = [body for _, body in results if body["stored"]]
            unstored = [body for _, body in results if not body["stored"]]
            assert unstored, "the outage should have cost some records"
            assert all(body["prediction_id"] is None for body in unstored)
            # What was stored is all there, and only that: nothing silently lost or invented.
            for body in stored:
                assert get(client, body["prediction_id"]).status_code == 200
            for body in unstored:
                assert_error(get(client, body["request_id"]), 404, "not_found")
            # Storing resumed once the server was back.
            assert infer(client, jpeg_bytes(seed=9999)).json()["stored"] is True
            metrics = client.get("/metrics").text
            assert 'veracity_store_failures_total{operation="record"}' in metrics
    finally:
        server.close()


# A small index is searched on the event loop, a large one in a thread: both find the same.
@pytest.mark.parametrize("inline_hashes", [50_000, 0], ids=["on-the-loop", "in-a-thread"])
def test_a_reencoded_or_resized_copy_is_recognised_with_its_review(
    store_client, inline_hashes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from veracity.evaluation.duplicates import duplicate_cases
    from veracity.similarity import seen

    monkeypatch.setattr(seen, "_INLINE_HASHES", inline_hashes)

    first, other = duplicate_cases(2)
    original = store_client.post(
        "/infer",
        files={"file": ("o.png", first.original, "image/png")},
        headers={"X-API-Key": API_KEY},
    ).json()
    assert original["seen_before"] == []
    feedback(store_client, original["prediction_id"], {"label": "fake", "note": "known fake"})

    for n, copy in enumerate((first.jpeg_q70, first.half_size)):
        answer = infer(store_client, copy).json()
        # The original, and the copies sent before this one.
        assert len(answer["seen_before"]) == 1 + n
        (match,) = [
            m for m in answer["seen_before"] if m["prediction_id"] == original["prediction_id"]
        ]
        assert match["request_id"] == original["request_id"]
        assert 0 <= match["distance"] <= 40
        assert match["review_label"] == "fake"
        assert match["verdict"] == original["verdict"]
    # Another key does not learn of this key's uploads; an admin does.
    assert infer(store_client, first.jpeg_q70, key=OTHER_KEY).json()["seen_before"] == []
    admin = infer(store_client, first.half_size, key=ADMIN_KEY).json()["seen_before"]
    assert original["prediction_id"] in [m["prediction_id"] for m in admin]
    # A different picture is not a match.
    unrelated = store_client.post(
        "/infer",
        files={"file": ("u.png", other.original, "image/png")},
        headers={"X-API-Key": API_KEY},
    ).json()
    assert original["prediction_id"] not in [m["prediction_id"] for m in unrelated["seen_before"]]
    stored = get(store_client, original["prediction_id"]).json()
    assert "seen_before" not in stored["result"]
