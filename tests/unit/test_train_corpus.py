"""``veracity train --corpus``: pairs from the corpus's train split, the checkpoint chosen
and calibrated on its validate split, the corpus named in the metadata, and a corpus that
is not what the manifest says refused before anything is trained."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import TINY_ARCH
from tests.unit.test_pairs import row, textured, write_image
from veracity.checkpoint import load_checkpoint
from veracity.cli import main
from veracity.corpus.manifest import COLUMNS, CorpusError
from veracity.errors import ConfigurationError
from veracity.models import create_classifier, resolve_preprocess_config
from veracity.training import corpus_data
from veracity.training.config import TrainConfig
from veracity.training.corpus_data import VALIDATION_EPOCH, CorpusData, WholePairs
from veracity.training.trainer import train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Train: source alpha, three photos. Validate: source beta, twenty small photos (the
    calibration needs 20 images of each class)."""
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for n, name in enumerate(["a0.png", "a1.png", "a2.jpg"]):
        data = write_image(root / "alpha" / name, textured(n, 160 + 20 * n, 200))
        rows.append(row("alpha", "train", "real_photo", name, data))
    for n in range(20):
        name = f"b{n}.png"
        data = write_image(root / "beta" / name, textured(10 + n, 100, 120))
        rows.append(row("beta", "validate", "real_photo", name, data))
    manifest = root / "manifest.tsv"
    manifest.write_text("\t".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return root, manifest


def corpus_config(corpus: tuple[Path, Path], out: Path, **overrides: object) -> TrainConfig:
    root, manifest = corpus
    values: dict[str, object] = {
        "data_dir": None,
        "corpus_dir": root,
        "corpus_manifest": manifest,
        "out_dir": out,
        "architecture": TINY_ARCH,
        "image_size": 64,
        "epochs": 1,
        "batch_size": 4,
        "device": "cpu",
        "seed": 3,
    } | overrides
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_cli_trains_on_the_corpus_and_the_checkpoint_names_it(corpus, tmp_path, capsys):
    root, manifest = corpus
    out = tmp_path / "run"
    argv = ["train", "--corpus", str(root), "--manifest", str(manifest), "--out", str(out)]
    argv += ["--arch", TINY_ARCH, "--image-size", "64", "--epochs", "2", "--batch-size", "4"]
    argv += ["--video-share", "0.5", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [h["epoch"] for h in summary["history"]] == [1.0, 2.0]
    checkpoint = load_checkpoint(Path(summary["best"]))
    training = checkpoint.metadata.training
    assert training["data_dir"] is None
    record = training["corpus"]
    assert record["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert record["sources"] == {"train": {"alpha": 3}, "validate": {"beta": 20}}
    assert record["video_share"] == 0.5
    assert record["pairs"] == {"train_per_epoch": 3, "validate": 20}
    # Every pair of both planned epochs is counted under the kind it was drawn with.
    assert sum(record["edit_kinds"]["train"].values()) == 3 * 2
    assert sum(record["edit_kinds"]["validate"].values()) == 20
    assert (training["train_images"], training["val_images"]) == (6, 40)
    # Calibration and the gate were fitted after training, on the validate split's pairs.
    calibration = checkpoint.metadata.calibration
    assert calibration is not None
    assert calibration.images == {"reference": 6, "calibration": 40}
    assert "validate split's pairs (beta)" in calibration.data
    assert record["manifest_sha256"] in calibration.data
    assert summary["calibration"]["version"] == 1
    # The drift profile: the same 40 validate images judged as uploads, and rebuilt the
    # same by `calibrate --profile-only --corpus` (the pairs drawn as the run drew them).
    best = Path(summary["best"])
    drift = checkpoint.metadata.drift_profile
    assert drift is not None
    assert drift.answers == 40
    assert drift.calibration_version == 1
    first = best.with_name("best.drift.json").read_bytes()
    argv = ["calibrate", "--checkpoint", str(best), "--corpus", str(root), "--profile-only"]
    assert main([*argv, "--device", "cpu"]) == 0
    rebuilt = json.loads(capsys.readouterr().out)
    assert rebuilt["answers"] == 40
    again = json.loads(best.with_name("best.drift.json").read_bytes())
    assert again["signals"] == json.loads(first)["signals"]


def test_calibration_and_threshold_see_only_the_validate_split(corpus, tmp_path, monkeypatch):
    seen: dict[str, WholePairs] = {}
    real_fit = corpus_data.fit_stored_calibration

    def recording(checkpoint, loaded, *, reference, calibration, **kwargs):  # type: ignore[no-untyped-def]
        seen["reference"], seen["calibration"] = reference, calibration
        return real_fit(checkpoint, loaded, reference=reference, calibration=calibration, **kwargs)

    monkeypatch.setattr(corpus_data, "fit_stored_calibration", recording)
    train(corpus_config(corpus, tmp_path / "run"), progress=False)
    calibration, reference = seen["calibration"], seen["reference"]
    splits = {base.entry.split for base in calibration.pairs.media.bases}
    donors = {photo.entry.split for photo in calibration.pairs.media.photos}
    assert splits == donors == {"validate"}
    assert {base.entry.split for base in reference.pairs.media.bases} == {"train"}
    assert calibration.pairs.epoch == reference.pairs.epoch == VALIDATION_EPOCH
    # Image by image: each real followed by its fake, whole, as the service reads them.
    assert [calibration[i][1] for i in range(len(calibration))] == [0, 1] * 20
    finished = calibration.pairs.finished(calibration.numbers[0])
    for side, image in enumerate((finished.real, finished.fake)):
        expected = calibration.transform(Image.fromarray(image))
        assert torch.equal(calibration[side][0], expected)


def test_validation_is_fixed_and_training_draws_new_pairs_each_epoch(corpus, tmp_path):
    config = corpus_config(corpus, tmp_path / "run", pairs_per_epoch=2)
    model = create_classifier(TINY_ARCH)
    data = CorpusData(config, resolve_preprocess_config(model, image_size=64))
    first, again = (list(data.validation_loader()) for _ in range(2))
    for (images_a, labels_a), (images_b, labels_b) in zip(first, again, strict=True):
        assert torch.equal(images_a, images_b)
        assert labels_a.tolist() == labels_b.tolist() == [0, 1] * (len(labels_a) // 2)
    assert len(data.epoch_order(1)) == len(data.epoch_order(2)) == 2
    (epoch_1,), (epoch_2,) = (list(data.train_loader(e)) for e in (1, 2))
    assert epoch_1[0].shape == (4, 3, 64, 64)
    assert not torch.equal(epoch_1[0], epoch_2[0])
    data.train.set_epoch(2)
    assert [data.train.kind_at(i) for i in range(3)] == [data.train.pair(i).kind for i in range(3)]


def test_corpus_and_data_together_are_refused(corpus, tmp_path, tiny_dataset, capsys):
    root, _ = corpus
    argv = ["train", "--data", str(tiny_dataset), "--corpus", str(root), "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert "argument --corpus: not allowed with argument --data" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="exactly one of them"):
        corpus_config(corpus, tmp_path, data_dir=tiny_dataset)
    with pytest.raises(ConfigurationError, match="exactly one of them"):
        corpus_config(corpus, tmp_path, corpus_dir=None)


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_corpus_that_is_not_what_the_manifest_says_is_refused(corpus, tmp_path, damage):
    root = tmp_path / "corpus"
    shutil.copytree(corpus[0], root)
    target = root / "beta" / "b1.png"  # a validate file: both splits are checked
    if damage == "changed":
        target.write_bytes(target.read_bytes()[:-1] + b"\0")
    else:
        target.unlink()
    out = tmp_path / "run"
    with pytest.raises(CorpusError, match=damage):
        train(corpus_config((root, corpus[1]), out), progress=False)
    assert not (out / "best.safetensors").exists()
