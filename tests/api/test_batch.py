"""POST /infer/batch: per-item answers, one bad file does not fail the rest, limits."""

from tests.api.conftest import API_KEY, assert_error, jpeg_bytes, make_settings, serving

HEADERS = {"X-API-Key": API_KEY}


def post_batch(client, files: list[tuple[str, bytes]], headers=HEADERS):
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    return client.post("/infer/batch", files=parts, headers=headers)


def test_one_bad_file_does_not_fail_the_rest(client) -> None:
    files = [
        ("a.jpg", jpeg_bytes(128, 128, seed=1)),
        ("broken.jpg", b"\xff\xd8\xff\xe0 truncated"),
        ("b.jpg", jpeg_bytes(160, 120, seed=2)),
        ("doc.pdf", b"%PDF-1.4 not an image"),
        ("empty.png", b""),
    ]
    response = post_batch(client, files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert (body["succeeded"], body["failed"]) == (2, 3)
    items = body["items"]
    assert [item["index"] for item in items] == [0, 1, 2, 3, 4]
    assert [item["filename"] for item in items] == [name for name, _ in files]
    for i in (0, 2):
        result = items[i]["result"]
        assert items[i]["error"] is None
        assert abs(result["fake_prob"] + result["real_prob"] - 1.0) < 1e-9
        assert result["verdict"] in ("real", "fake", "inconclusive")
    assert items[1]["error"]["code"] == "invalid_image"
    assert items[3]["error"]["code"] in ("invalid_image", "unsupported_image_format")
    assert items[4]["error"]["code"] == "invalid_image"
    assert all(items[i]["result"] is None for i in (1, 3, 4))
    # The service keeps serving.
    assert post_batch(client, files[:1]).json()["succeeded"] == 1


def test_file_count_total_bytes_and_field_name_are_bounded(tiny_checkpoint) -> None:
    settings = make_settings(tiny_checkpoint, batch_max_files=3, batch_max_upload_mb=0.2)
    with serving(settings) as client:
        small = jpeg_bytes(32, 32)
        assert_error(post_batch(client, [("x.jpg", small)] * 4), 400, "bad_request")
        big = [("x.jpg", b"\xff" * 150_000), ("y.jpg", b"\xff" * 150_000)]
        assert_error(post_batch(client, big), 413, "payload_too_large")
        response = client.post(
            "/infer/batch", files={"file": ("x.jpg", small, "image/jpeg")}, headers=HEADERS
        )
        assert_error(response, 400, "bad_request")
        assert "'files'" in response.json()["error"]["message"]
        assert_error(post_batch(client, [("x.jpg", small)], headers={}), 401, "unauthorized")
