"""/infer's verdicts over HTTP: fields, gates, the self-check, metrics and the schema."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import API_KEY, assert_error, infer, make_settings, serving
from tests.imagefiles import encode
from veracity.checkpoint import load_checkpoint
from veracity.inference.predictor import Prediction, Predictor
from veracity.training.calibrate import calibrate_checkpoint
from veracity.verdicts.quality import InputQuality


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 256], axis=-1)
    noisy = base + rng.normal(0, 8, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def calibrated_checkpoint(
    tiny_checkpoint: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    target = tmp_path_factory.mktemp("calibrated") / "tiny.safetensors"
    shutil.copy(tiny_checkpoint, target)
    shutil.copy(tiny_checkpoint.with_suffix(".json"), target.with_suffix(".json"))
    calibrate_checkpoint(
        target, tiny_dataset, device=torch.device("cpu"), batch_size=8, progress=False
    )
    return target


@pytest.fixture
def calibrated_client(calibrated_checkpoint: Path) -> Iterator[TestClient]:
    with serving(make_settings(calibrated_checkpoint)) as client:
        yield client


def test_verdict_fields_are_added_to_the_old_contract(client) -> None:
    body = infer(client, encode(photo((320, 240)), "JPEG", quality=90)).json()
    # The old fields keep their meaning ...
    assert body["fake_prob"] + body["real_prob"] == pytest.approx(1.0, abs=1e-9)
    assert body["label"] == ("fake" if body["fake_prob"] > 0.5 else "real")
    # ... and the verdict is added.
    assert body["verdict"] in ("real", "fake", "inconclusive")
    assert body["thresholds"] == {"real": 0.25, "fake": 0.75}
    assert body["quality"] == {
        "width": 320,
        "height": 240,
        "jpeg_quality": 90,
        "content_std": pytest.approx(body["quality"]["content_std"]),
    }
    # The tiny checkpoint is format 1: no calibration, no gate, and the answer says so.
    assert body["calibrated"] is False
    assert body["calibration_version"] is None
    assert body["ood_score"] is None
    assert body["stability"] is None
    # An untrained head answers exactly 0.5: inside the band.
    assert body["verdict"] == "inconclusive"
    assert [r["code"] for r in body["reasons"]] == ["near_threshold"]


def test_a_calibrated_checkpoint_reports_its_version_and_gate(calibrated_client) -> None:
    body = infer(calibrated_client, encode(photo((320, 240)), "PNG")).json()
    assert body["calibrated"] is True
    assert body["calibration_version"] == 1
    assert isinstance(body["ood_score"], float)
    assert body["quality"]["jpeg_quality"] is None
    model = calibrated_client.get("/model", headers={"X-API-Key": API_KEY}).json()
    assert model["calibration"]["version"] == 1
    assert model["thresholds"] == {"real": 0.25, "fake": 0.75}


@pytest.mark.parametrize(
    ("image", "fmt", "params", "code"),
    [
        (photo((48, 48)), "PNG", {}, "low_resolution"),
        (photo((320, 240)), "JPEG", {"quality": 15}, "heavy_compression"),
        (Image.new("RGB", (320, 240), (90, 140, 30)), "PNG", {}, "no_content"),
    ],
)
def test_each_quality_gate_over_http(client, image, fmt, params, code) -> None:
    response = infer(client, encode(image, fmt, **params))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "inconclusive"
    assert code in [r["code"] for r in body["reasons"]]
    assert all(r["message"] for r in body["reasons"])


def test_robustness_check_on_request_and_by_setting(calibrated_checkpoint: Path) -> None:
    data = encode(photo((320, 256)), "JPEG", quality=92)
    with serving(make_settings(calibrated_checkpoint)) as client:
        plain = infer(client, data).json()
        checked = infer(client, data, params={"robustness_check": "true"}).json()
    assert plain["stability"] is None
    stability = checked["stability"]
    assert set(stability["variants"]) == {"jpeg75", "half_size"}
    assert 0.0 <= stability["score"] <= 1.0
    assert checked["fake_prob"] == pytest.approx(plain["fake_prob"], abs=1e-6)
    with serving(make_settings(calibrated_checkpoint, robustness_check=True)) as client:
        default_on = infer(client, data).json()
        opted_out = infer(client, data, params={"robustness_check": "false"}).json()
    assert default_on["stability"] is not None
    assert opted_out["stability"] is None


def test_half_size_is_skipped_when_it_would_be_too_small(calibrated_client) -> None:
    data = encode(photo((100, 100)), "PNG")
    body = infer(calibrated_client, data, params={"robustness_check": "true"}).json()
    assert set(body["stability"]["variants"]) == {"jpeg75"}


def test_a_bad_robustness_flag_is_a_422_in_the_error_shape(client) -> None:
    response = infer(client, encode(photo((128, 128)), "PNG"), params={"robustness_check": "x"})
    assert_error(response, 422, "validation_error")


def test_a_verdict_that_flips_becomes_unstable(calibrated_checkpoint: Path) -> None:
    predictor = Predictor(load_checkpoint(calibrated_checkpoint), torch.device("cpu"))

    def prediction(fake: float) -> Prediction:
        return Prediction(1 - fake, fake, score=0.0, raw_fake_prob=fake, ood_score=0.2)

    quality = InputQuality(512, 512, 95, 40.0)
    steady = predictor.judge(prediction(0.95), quality, {"jpeg75": prediction(0.9)})
    assert steady.verdict == "fake"
    assert steady.stability is not None
    assert steady.stability.score == pytest.approx(0.95)
    flipped = predictor.judge(
        prediction(0.95), quality, {"jpeg75": prediction(0.9), "half_size": prediction(0.1)}
    )
    assert flipped.verdict == "inconclusive"
    assert [r.code for r in flipped.reasons] == ["unstable"]
    assert flipped.stability.flipped == ("half_size",)
    assert flipped.label == "fake"


def test_verdicts_and_reasons_are_counted(client) -> None:
    infer(client, encode(Image.new("RGB", (320, 240), (1, 2, 3)), "PNG"))
    text = client.get("/metrics").text
    assert 'veracity_verdicts_total{verdict="inconclusive"}' in text
    assert 'veracity_verdict_reasons_total{reason="no_content"}' in text


def test_every_error_status_has_its_own_example(client) -> None:
    responses = client.get("/openapi.json").json()["paths"]["/infer"]["post"]["responses"]
    examples = {
        status: body["content"]["application/json"]["example"]["error"]["code"]
        for status, body in responses.items()
        if not status.startswith("2")
    }
    assert len(examples) >= 9
    assert len(set(examples.values())) == len(examples), examples
    assert examples["401"] == "unauthorized"
    assert examples["415"] == "unsupported_image_format"
    schema = client.get("/openapi.json").json()["components"]["schemas"]["InferResponse"]
    assert {"verdict", "reasons", "calibrated", "stability"} <= set(schema["properties"])
    assert "Calibrated" in schema["properties"]["fake_prob"]["description"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("real_threshold", 0.6), ("fake_threshold", 0.4), ("min_jpeg_quality", 0)],
)
def test_operating_points_are_validated(tiny_checkpoint: Path, name: str, value) -> None:
    with pytest.raises(ValueError, match=name):
        make_settings(tiny_checkpoint, **{name: value})
