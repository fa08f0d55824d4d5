"""Every way an upload can be wrong: status, error shape, and the service keeps serving."""

import pytest
from PIL import Image

from tests.api.conftest import API_KEY, assert_error, assert_still_serving, infer, jpeg_bytes
from tests.imagefiles import encode, png_declaring


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"hello, this is text", 422, "invalid_image"),
        (bytes(range(256)) * 40, 422, "invalid_image"),
        (jpeg_bytes()[:400], 422, "invalid_image"),
        (encode(Image.new("RGB", (32, 32)), "TIFF"), 415, "unsupported_image_format"),
        (encode(Image.new("RGB", (32, 32)), "ICO"), 415, "unsupported_image_format"),
        (png_declaring(30_000, 30_000), 413, "image_too_large"),
    ],
    ids=["text", "random", "truncated-jpeg", "tiff", "ico", "png-bomb"],
)
def test_bad_images_get_an_actionable_4xx(client, data: bytes, status: int, code: str) -> None:
    error = assert_error(infer(client, data), status, code)
    if code == "unsupported_image_format":
        assert "JPEG, PNG, WEBP, BMP, GIF" in error["message"]
    assert_still_serving(client)


def test_declared_content_type_is_ignored(client) -> None:
    png = encode(Image.new("RGB", (64, 64), (200, 10, 10)), "PNG")
    response = client.post(
        "/infer",
        files={"file": ("photo.gif", png, "application/pdf")},
        headers={"X-API-Key": API_KEY},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "GIF"])
def test_every_allowed_format_is_accepted(client, fmt: str) -> None:
    assert infer(client, encode(Image.new("RGB", (64, 48), (0, 90, 200)), fmt)).status_code == 200


def test_empty_file_is_400(client) -> None:
    assert_error(infer(client, b""), 400, "bad_request")
    assert_still_serving(client)


def test_missing_file_part_is_400(client) -> None:
    response = client.post("/infer", data={"image": "x"}, headers={"X-API-Key": API_KEY})
    error = assert_error(response, 400, "bad_request")
    assert "'file'" in error["message"]


def test_text_field_named_file_is_400(client) -> None:
    response = client.post("/infer", data={"file": "not a file"}, headers={"X-API-Key": API_KEY})
    assert_error(response, 400, "bad_request")


def test_json_body_is_400(client) -> None:
    response = client.post("/infer", json={"file": "x"}, headers={"X-API-Key": API_KEY})
    assert_error(response, 400, "bad_request")


def test_two_file_parts_are_refused(client) -> None:
    files = [
        ("file", ("a.jpg", jpeg_bytes(), "image/jpeg")),
        ("file", ("b.jpg", jpeg_bytes(), "image/jpeg")),
    ]
    response = client.post("/infer", files=files, headers={"X-API-Key": API_KEY})
    assert_error(response, 400, "bad_request")
    assert_still_serving(client)


def test_malformed_multipart_is_400(client) -> None:
    response = client.post(
        "/infer",
        content=b'--zzz\r\nContent-Disposition: form-data; name="file"\r\n\r\nno end',
        headers={"X-API-Key": API_KEY, "content-type": "multipart/form-data"},
    )
    assert_error(response, 400, "bad_request")
    assert_still_serving(client)


def test_oversized_body_with_content_length_is_413(client) -> None:
    big = b"\xff\xd8" + b"\x00" * (2 * 1024 * 1024)  # limit is 1 MB in these tests
    error = assert_error(infer(client, big), 413, "payload_too_large")
    assert "1 MB upload limit" in error["message"]
    assert_still_serving(client)


def test_oversized_chunked_body_is_413(client) -> None:
    boundary = b"zzz"
    head = b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'

    def body():
        yield head
        for _ in range(40):
            yield b"\x00" * 65536  # 2.5 MB in all, no Content-Length

    response = client.post(
        "/infer",
        content=body(),
        headers={
            "X-API-Key": API_KEY,
            "content-type": f"multipart/form-data; boundary={boundary.decode()}",
        },
    )
    assert_error(response, 413, "payload_too_large")
    assert_still_serving(client)


def test_image_just_under_the_body_limit_is_accepted(client) -> None:
    data = jpeg_bytes(700, 500, quality=95)
    assert len(data) < 1024 * 1024
    assert infer(client, data).status_code == 200


def test_file_just_over_the_limit_is_413_not_truncated(client) -> None:
    # Inside the multipart allowance, so the body limit lets it through: the file itself
    # must still be refused rather than cut at the limit and reported as a corrupt image.
    data = jpeg_bytes(16, 16) + b"\x00" * (1024 * 1024)
    assert 1024 * 1024 < len(data) < 1024 * 1024 + 64 * 1024
    error = assert_error(infer(client, data), 413, "payload_too_large")
    assert "1 MB upload limit" in error["message"]
    assert_still_serving(client)
