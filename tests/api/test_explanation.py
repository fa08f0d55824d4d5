"""?explain=true through the API: the grid answered, stored, cached apart, and drawn as a PNG."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.api.conftest import (
    API_KEY,
    OTHER_KEY,
    assert_error,
    infer,
    jpeg_bytes,
    make_settings,
    serving,
)
from tests.unit.test_explanation import GRID, write_patch_checkpoint
from veracity.inference.attribution import cells_per_patch
from veracity.overlay import ramp


@pytest.fixture(scope="module")
def patch_checkpoint(tmp_path_factory) -> Path:
    return write_patch_checkpoint(tmp_path_factory.mktemp("patches") / "model.safetensors")


@pytest.fixture
def client(patch_checkpoint: Path):
    with serving(make_settings(patch_checkpoint)) as client:
        yield client


def explanation_png(client, prediction_id: str, key: str = API_KEY):
    return client.get(f"/predictions/{prediction_id}/explanation.png", headers={"X-API-Key": key})


def test_explain_answers_a_grid_that_is_stored_and_drawn(client) -> None:
    width, height = 320, 256
    response = infer(client, jpeg_bytes(width, height, seed=1), params={"explain": "true"})
    assert response.status_code == 200, response.text
    answer = response.json()
    explanation = answer["explanation"]
    assert explanation["method"] == "patch_probabilities"
    assert explanation["reason"] is None
    grid = explanation["grid"]
    assert len(grid) == GRID
    assert all(len(row) == GRID for row in grid)
    assert all(0.0 <= p <= 1.0 for row in grid for p in row)
    # top_half pooling: the image's score is the mean of the more suspicious half, so the
    # image's probability lies between the median cell and the top one.
    assert max(p for row in grid for p in row) >= answer["fake_prob"] - 1e-4

    stored = client.get(f"/predictions/{answer['prediction_id']}", headers={"X-API-Key": API_KEY})
    assert stored.json()["result"]["explanation"] == explanation

    drawn = explanation_png(client, answer["prediction_id"])
    assert drawn.status_code == 200, drawn.text
    assert drawn.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(drawn.content))
    assert image.format == "PNG"
    assert image.size == (width, height)
    pixels = image.convert("RGBA")
    # Transparent enough to see the picture through; the top-left cell drawn in its colour.
    assert 0 < pixels.getpixel((0, 0))[3] < 255
    assert pixels.getpixel((0, 0)) == ramp(grid[0][0])
    assert pixels.getpixel((width - 1, height - 1)) == ramp(grid[-1][-1])
    # Another key cannot see it, exactly as it cannot see the prediction.
    assert_error(explanation_png(client, answer["prediction_id"], key=OTHER_KEY), 404, "not_found")
    assert_error(explanation_png(client, "f" * 32), 404, "not_found")


def test_without_explain_there_is_no_explanation_and_no_drawing(client) -> None:
    answer = infer(client, jpeg_bytes(seed=2)).json()
    assert answer["explanation"] is None
    assert_error(explanation_png(client, answer["prediction_id"]), 404, "no_explanation")


def test_the_cache_keeps_explained_and_plain_answers_apart(client) -> None:
    data = jpeg_bytes(seed=3)
    plain = infer(client, data).json()
    explained = infer(client, data, params={"explain": "true"}).json()
    assert explained["cached"] is False
    assert explained["explanation"]["grid"]
    again_explained = infer(client, data, params={"explain": "true"}).json()
    assert again_explained["cached"] is True
    assert again_explained["explanation"] == explained["explanation"]
    again_plain = infer(client, data).json()
    assert again_plain["cached"] is True
    assert again_plain["explanation"] is None
    assert again_plain["fake_prob"] == plain["fake_prob"] == explained["fake_prob"]


def test_grad_cam_on_request_is_a_finer_grid_stored_drawn_and_cached_apart(client) -> None:
    width, height = 320, 256
    data = jpeg_bytes(width, height, seed=5)
    params = {"explain": "true", "explain_method": "grad_cam"}
    answer = infer(client, data, params=params).json()
    explanation = answer["explanation"]
    assert explanation["method"] == "grad_cam"
    grid = explanation["grid"]
    side = GRID * cells_per_patch(GRID)
    assert len(grid) == side
    assert all(len(row) == side for row in grid)
    values = [v for row in grid for v in row]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert max(values) in (0.0, 1.0)  # relative: the most telling cell is 1 (or none is)
    drawn = Image.open(io.BytesIO(explanation_png(client, answer["prediction_id"]).content))
    assert drawn.size == (width, height)
    corner = drawn.convert("RGBA").getpixel((width - 1, height - 1))
    # Within a step of 1/250 of the cell's colour (a 16x16 grid may hold more colours
    # than a palette).
    assert all(abs(a - b) <= 3 for a, b in zip(corner, ramp(grid[-1][-1]), strict=True))
    # The patch grid and Grad-CAM are different answers: neither is the other's cache hit.
    patches = infer(client, data, params={"explain": "true"}).json()
    assert patches["cached"] is False
    assert patches["explanation"]["method"] == "patch_probabilities"
    again = infer(client, data, params=params).json()
    assert again["cached"] is True
    assert again["explanation"] == explanation
    assert again["fake_prob"] == patches["fake_prob"] == answer["fake_prob"]
    assert_error(
        infer(client, data, params={"explain": "true", "explain_method": "lime"}),
        422,
        "validation_error",
    )


def test_a_checkpoint_without_patches_says_why_it_has_no_grid(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint)) as client:
        answer = infer(client, jpeg_bytes(seed=4), params={"explain": "true"}).json()
        assert answer["explanation"]["method"] == "unavailable"
        assert answer["explanation"]["grid"] is None
        assert "resized crop" in answer["explanation"]["reason"]
        assert_error(explanation_png(client, answer["prediction_id"]), 404, "no_explanation")


def test_the_openapi_document_shows_the_parameter_the_field_and_the_png(client) -> None:
    document = client.get("/openapi.json").json()
    infer_parameters = {p["name"] for p in document["paths"]["/infer"]["post"]["parameters"]}
    assert "explain" in infer_parameters
    schema = document["components"]["schemas"]["InferResponse"]
    assert "explanation" in schema["properties"]
    assert any(example.get("explanation") for example in schema["examples"])
    png = document["paths"]["/predictions/{prediction_id}/explanation.png"]["get"]
    assert "image/png" in png["responses"]["200"]["content"]
    assert set(png["responses"]["404"]["content"]["application/json"]["examples"]) == {
        "not_found",
        "no_explanation",
    }
