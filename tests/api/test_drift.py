"""Drift through the app: a checkpoint calibrated (and so profiled) on one sample of the
synthetic data; a stream of uploads from another sample of the same generator raises no
alert, a stream of the same images heavily recompressed raises one within the window,
on GET /admin/drift and on the Prometheus gauges. The route is admin-only."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.api.conftest import (
    ADMIN_KEY,
    API_KEY,
    assert_error,
    jpeg_bytes,
    make_settings,
    serving,
)
from veracity.checkpoint import read_metadata
from veracity.cli import main
from veracity.sampledata import SampleDataSpec, generate_sample_data
from veracity.training.calibrate import calibrate_checkpoint, validation_variants
from veracity.training.uploads import unlabelled, variant_uploads

SPEC = SampleDataSpec(train_per_class=10, val_per_class=40, image_size=96)
SMALL_UPLOADS = [jpeg_bytes(120, 90, seed=i) for i in range(3)]


@pytest.fixture(scope="module")
def profiled(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("drift-reference-data")
    generate_sample_data(data, seed=21, spec=SPEC)
    target = tmp_path_factory.mktemp("profiled") / "tiny.safetensors"
    shutil.copy(tiny_checkpoint, target)
    shutil.copy(tiny_checkpoint.with_suffix(".json"), target.with_suffix(".json"))
    calibrate_checkpoint(target, data, device=torch.device("cpu"), batch_size=16, progress=False)
    return target


@pytest.fixture(scope="module")
def fresh_uploads(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Another sample of the generator, as calibration saw its own (with re-encodes)."""
    data = tmp_path_factory.mktemp("drift-live-data")
    generate_sample_data(data, seed=22, spec=SPEC)
    return list(unlabelled(variant_uploads(validation_variants(data, seed=3))))[:150]


def recompressed(upload: bytes) -> bytes:
    with Image.open(io.BytesIO(upload)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=8)
        return out.getvalue()


def send(client, uploads: list[bytes]) -> None:
    for i, data in enumerate(uploads):
        response = client.post(
            "/infer", files={"file": (f"u{i}.jpg", data)}, headers={"X-API-Key": API_KEY}
        )
        assert response.status_code == 200, response.text


def drift_of(client) -> dict:
    response = client.get("/admin/drift", headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 200, response.text
    body = response.json()
    (version,) = body["versions"]
    return version


@pytest.fixture
def drift_client(profiled: Path) -> Iterator:
    # A refresh interval past the test: the gauges change only when the test asks.
    settings = make_settings(
        profiled, admin_api_keys=ADMIN_KEY, drift_interval_s=3600, cache_enabled=False
    )
    with serving(settings) as client:
        yield client


def test_training_data_profile_is_recorded_with_the_calibration(profiled: Path) -> None:
    record = read_metadata(profiled).drift_profile
    assert record is not None
    assert record.answers == 3 * 2 * SPEC.val_per_class
    assert record.calibration_version == 1


def test_an_in_distribution_stream_raises_no_alert(drift_client, fresh_uploads) -> None:
    send(drift_client, fresh_uploads)
    version = drift_of(drift_client)
    assert (version["model"], version["version"]) == ("tiny", "0.0.1")
    assert version["answers"] == len(fresh_uploads)
    assert not version["alert"], version["signals"]
    scored = {s["signal"]: s for s in version["signals"]}
    assert scored["jpeg_quality"]["state"] == "ok"
    assert scored["reviewer_agreement"]["state"] == "empty"
    metrics = drift_client.portal.call(drift_client.app.state.drift.refresh)
    assert metrics is not None
    text = drift_client.get("/metrics").text
    assert 'veracity_drift_alert{model="tiny",version="0.0.1"} 0.0' in text
    assert 'veracity_drift_score{model="tiny",signal="jpeg_quality",version="0.0.1"}' in text


def test_a_heavily_recompressed_stream_raises_an_alert(drift_client, fresh_uploads) -> None:
    send(drift_client, [recompressed(u) for u in fresh_uploads[:120]])
    version = drift_of(drift_client)
    assert version["alert"]
    scored = {s["signal"]: s for s in version["signals"]}
    jpeg = scored["jpeg_quality"]
    assert jpeg["state"] == "drift"
    assert jpeg["score"] > jpeg["threshold"]
    assert jpeg["live"]["q<50"] == 1.0
    drift_client.portal.call(drift_client.app.state.drift.refresh)
    text = drift_client.get("/metrics").text
    assert 'veracity_drift_alert{model="tiny",version="0.0.1"} 1.0' in text


def test_drift_is_for_admins_and_says_when_a_version_has_no_profile(
    drift_client, tiny_checkpoint: Path
) -> None:
    denied = drift_client.get("/admin/drift", headers={"X-API-Key": API_KEY})
    assert_error(denied, 403, "forbidden")
    # No traffic: reported as an empty window, not as drift.
    version = drift_of(drift_client)
    assert version["answers"] == 0
    assert not version["alert"]
    assert {s["state"] for s in version["signals"]} == {"empty"}
    with serving(make_settings(tiny_checkpoint, admin_api_keys=ADMIN_KEY)) as plain:
        body = plain.get("/admin/drift", headers={"X-API-Key": ADMIN_KEY}).json()
        assert body["versions"] == []
        assert "no drift profile" in body["unmonitored"][0]["reason"]
    settings = make_settings(tiny_checkpoint, store_enabled=False, admin_api_keys=ADMIN_KEY)
    with serving(settings) as no_store:
        assert_error(no_store.get("/admin/drift", headers={"X-API-Key": API_KEY}), 403, "forbidden")
        off = no_store.get("/admin/drift", headers={"X-API-Key": ADMIN_KEY})
        assert "needs the results store" in assert_error(off, 404, "not_found")["message"]


def test_the_drift_report_command_writes_the_same_scores_with_plots(
    drift_client, fresh_uploads, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(drift_client, [recompressed(u) for u in fresh_uploads[:110]])
    served = drift_of(drift_client)
    settings = drift_client.app.state.settings
    monkeypatch.setenv("VERACITY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("VERACITY_CHECKPOINT", str(settings.checkpoint))
    monkeypatch.setenv("VERACITY_DATABASE_URL", "")
    out = tmp_path / "report"
    assert main(["drift-report", "--since", "1h", "--out", str(out)]) == 3  # an alert
    report = json.loads((out / "drift.json").read_text())
    (version,) = report["versions"]
    assert version["alert"]
    assert version["answers"] == served["answers"] == 110
    by_signal = {s["signal"]: s["score"] for s in version["signals"]}
    assert by_signal == {s["signal"]: s["score"] for s in served["signals"]}
    with Image.open(out / "drift_tiny_0.0.1.png") as plot:
        assert plot.width > 800
    # A period before any traffic: empty, no alert.
    assert main(["drift-report", "--since", "3h", "--until", "2h", "--out", str(out)]) == 0
    assert main(["drift-report", "--since", "yesterday", "--out", str(out)]) == 2


def test_versions_are_named_as_the_repository_serves_them(profiled: Path, tmp_path: Path) -> None:
    # A repository folder whose names differ from those inside the checkpoint (tiny 0.0.1).
    folder = tmp_path / "models" / "detector" / "7"
    folder.mkdir(parents=True)
    for suffix in (".safetensors", ".json", ".calibration.safetensors", ".drift.json"):
        shutil.copy(profiled.with_name("tiny" + suffix), folder / ("model" + suffix))
    settings = make_settings(
        profiled, model_repository=tmp_path / "models", admin_api_keys=ADMIN_KEY
    )
    with serving(settings) as client:
        send(client, [recompressed(jpeg) for jpeg in SMALL_UPLOADS])
        response = client.get(
            "/admin/drift", params={"model": "detector"}, headers={"X-API-Key": ADMIN_KEY}
        )
        (version,) = response.json()["versions"]
    assert (version["model"], version["version"]) == ("detector", "7")
    assert version["answers"] == len(SMALL_UPLOADS)
