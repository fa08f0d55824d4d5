"""Kept inputs: content-addressed files when the deployment asks for them, erased with the
last prediction about them, swept after retention, and exported for training."""

from __future__ import annotations

import hashlib
import os
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
from veracity.cli import main
from veracity.store.inputs import InputFiles
from veracity.training.dataset import scan_split


@pytest.fixture
def kept(tiny_checkpoint: Path, tmp_path: Path):
    settings = make_settings(
        tiny_checkpoint, data_dir=tmp_path, store_inputs=True, admin_api_keys=ADMIN_KEY
    )
    with serving(settings) as client:
        yield client, InputFiles(tmp_path / "inputs", retention_s=1)


def delete(client, prediction_id: str, key: str = API_KEY) -> int:
    return client.delete(f"/predictions/{prediction_id}", headers={"X-API-Key": key}).status_code


def test_inputs_are_kept_once_and_erased_with_their_last_prediction(kept) -> None:
    client, inputs = kept
    data = jpeg_bytes(seed=1)
    digest = hashlib.sha256(data).hexdigest()
    mine = infer(client, data).json()["prediction_id"]
    path = inputs.path(digest)
    assert path.read_bytes() == data
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    theirs = infer(client, data, key=OTHER_KEY).json()["prediction_id"]
    assert len(list((inputs.root).glob("??/*"))) == 1  # the same bytes: one file
    assert delete(client, mine) == 204
    assert path.exists()  # the other key's prediction still refers to it
    assert delete(client, theirs, key=OTHER_KEY) == 204
    assert not path.exists()


def test_kept_inputs_expire_after_their_retention(tmp_path: Path) -> None:
    inputs = InputFiles(tmp_path, retention_s=60)
    old = inputs.save("a" * 64, b"old")
    new = inputs.save("b" * 64, b"new")
    past = time.time() - 120
    os.utime(old, (past, past))
    assert inputs.sweep() == 1
    assert (old.exists(), new.exists()) == (False, True)
    # Uploading the same bytes again restarts the clock.
    inputs.save("b" * 64, b"new")
    assert inputs.sweep(now=time.time() + 30) == 0


def test_reviewed_inputs_export_as_a_training_tree(
    kept, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    client, _ = kept
    labels = {}
    for seed in range(12):
        data = jpeg_bytes(seed=100 + seed)
        prediction_id = infer(client, data).json()["prediction_id"]
        label = "fake" if seed % 2 else "real"
        client.post(
            f"/predictions/{prediction_id}/feedback",
            json={"label": "real" if label == "fake" else "fake"},  # corrected below
            headers={"X-API-Key": API_KEY},
        )
        client.post(
            f"/predictions/{prediction_id}/feedback",
            json={"label": label},
            headers={"X-API-Key": ADMIN_KEY},
        )
        labels[hashlib.sha256(data).hexdigest()] = label
    infer(client, jpeg_bytes(seed=999))  # never reviewed: not exported
    monkeypatch.setenv("VERACITY_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "feedback"
    assert main(["export-feedback", "--out", str(out)]) == 0
    exported = {p.stem: p.parent.name for p in out.glob("*/*/*.jpg")}
    assert exported == labels  # every reviewed input once, under its latest label
    splits = {p.parent.parent.name for p in out.glob("*/*/*.jpg")}
    assert splits <= {"train", "val"}
    # What `veracity train` reads.
    train = scan_split(out, "train", ("real", "fake"))
    assert len(train) == sum(1 for p in out.glob("train/*/*.jpg"))
    assert main(["export-feedback", "--out", str(out)]) == 2  # not empty: refused
    assert "not empty" in capsys.readouterr().err
