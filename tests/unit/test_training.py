import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_ARCH
from veracity.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from veracity.cli import main
from veracity.errors import ConfigurationError, DatasetError
from veracity.models import CLASS_NAMES, create_classifier, resolve_preprocess_config
from veracity.training.config import TrainConfig
from veracity.training.trainer import lr_at, train


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    values = {
        "data_dir": data,
        "out_dir": out,
        "architecture": TINY_ARCH,
        "image_size": 64,
        "epochs": 1,
        "batch_size": 4,
        "device": "cpu",
        "seed": 3,
    } | overrides
    return TrainConfig(**values)


def test_one_epoch_writes_loadable_best_and_last(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train(tiny_config(tiny_dataset, tmp_path / "run"), progress=False)
    for path in (result.best_checkpoint, result.last_checkpoint):
        checkpoint = load_checkpoint(path)
        assert checkpoint.metadata.architecture == TINY_ARCH
        assert checkpoint.metadata.preprocess.input_size == (3, 64, 64)
        metrics = checkpoint.metadata.metrics
        assert 0.0 <= metrics["val_accuracy"] <= 1.0
        assert 0.0 <= metrics["val_roc_auc"] <= 1.0
        assert checkpoint.metadata.training["train_images"] == 12
        assert checkpoint.metadata.training["seed"] == 3
    assert len(result.history) == 1
    assert set(result.history[0]) >= {"train_loss", "val_accuracy", "val_roc_auc", "val_loss"}


def test_same_seed_gives_identical_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    a = train(tiny_config(tiny_dataset, tmp_path / "a"), progress=False)
    b = train(tiny_config(tiny_dataset, tmp_path / "b"), progress=False)
    assert file_sha256(a.last_checkpoint) == file_sha256(b.last_checkpoint)


def test_resume_continues_exactly_where_the_run_stopped(tiny_dataset: Path, tmp_path: Path) -> None:
    straight = train(tiny_config(tiny_dataset, tmp_path / "straight", epochs=2), progress=False)
    # Interrupt a 2-epoch run after epoch 1 (a 1-epoch run has another cosine schedule).
    interrupted = tmp_path / "interrupted"
    full = tiny_config(tiny_dataset, interrupted, epochs=2)
    _train_epochs(full, stop_after=1)
    resumed = train(
        tiny_config(tiny_dataset, interrupted, epochs=2, resume=interrupted / "last.safetensors"),
        progress=False,
    )
    assert [h["epoch"] for h in resumed.history] == [2.0]
    assert file_sha256(resumed.last_checkpoint) == file_sha256(straight.last_checkpoint)


def _train_epochs(config: TrainConfig, *, stop_after: int) -> None:
    """Run ``config`` but stop after ``stop_after`` epochs, as a killed process would."""
    from veracity.training import trainer as trainer_module

    original = trainer_module.save_training_state
    calls = {"n": 0}

    class StopTrainingError(Exception):
        pass

    def save_then_maybe_stop(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == stop_after:
            raise StopTrainingError

    trainer_module.save_training_state = save_then_maybe_stop
    try:
        with pytest.raises(StopTrainingError):
            train(config, progress=False)
    finally:
        trainer_module.save_training_state = original


def test_resuming_a_finished_run_says_so(tiny_dataset: Path, tmp_path: Path) -> None:
    run = train(tiny_config(tiny_dataset, tmp_path / "run"), progress=False)
    with pytest.raises(ConfigurationError, match="already completed 1 of 1 epochs"):
        train(
            tiny_config(tiny_dataset, tmp_path / "run", resume=run.last_checkpoint), progress=False
        )


def test_resume_with_another_architecture_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    run = train(tiny_config(tiny_dataset, tmp_path / "run"), progress=False)
    config = tiny_config(
        tiny_dataset,
        tmp_path / "run",
        architecture="test_resnet",
        resume=run.last_checkpoint,
        epochs=2,
    )
    with pytest.raises(ConfigurationError, match="same architecture"):
        train(config, progress=False)


def test_pretrained_init_from_a_local_file(tiny_dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(9)
    donor = create_classifier(TINY_ARCH, num_classes=10)  # another head size, as ImageNet's
    weights = tmp_path / "backbone.pth"
    torch.save(donor.state_dict(), weights)
    model = create_classifier(TINY_ARCH, pretrained_file=weights)
    stem = "conv_stem.weight"
    assert torch.equal(model.state_dict()[stem], donor.state_dict()[stem])
    assert model.state_dict()["classifier.weight"].shape[0] == 2
    result = train(tiny_config(tiny_dataset, tmp_path / "run", pretrained=weights), progress=False)
    assert load_checkpoint(result.best_checkpoint).metadata.training["pretrained"] == str(weights)


def test_missing_pretrained_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        create_classifier(TINY_ARCH, pretrained_file=tmp_path / "nope.safetensors")


def test_bad_dataset_layout_stops_training_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "data" / "train" / "real").mkdir(parents=True)
    with pytest.raises(DatasetError, match="fake missing"):
        train(tiny_config(tmp_path / "data", tmp_path / "run"), progress=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("batch_size", 0), ("lr", -1.0), ("aug_scale", (0.9, 0.5)), ("image_size", 8)],
)
def test_invalid_settings_are_named(tmp_path: Path, field: str, value) -> None:
    with pytest.raises(ConfigurationError, match=field):
        tiny_config(tmp_path, tmp_path, **{field: value})


def test_learning_rate_warms_up_then_follows_a_cosine_to_zero() -> None:
    rates = [lr_at(s, base_lr=1.0, warmup_steps=10, total_steps=110) for s in range(111)]
    assert rates[0] == pytest.approx(0.1)
    assert rates[9] == pytest.approx(1.0)
    assert rates[60] == pytest.approx(0.5)
    assert rates[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))
    assert not any(math.isnan(r) for r in rates)


def test_cli_trains_and_predicts_end_to_end(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(tiny_dataset),
            "--out",
            str(out),
            "--arch",
            TINY_ARCH,
            "--image-size",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert Path(summary["best"]).exists()
    images = sorted((tiny_dataset / "val" / "fake").glob("*.png"))[:2]
    assert main(["predict", "--checkpoint", summary["best"], *map(str, images)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"] for line in lines] == [str(p) for p in images]
    for line in lines:
        assert line["fake_prob"] + line["real_prob"] == pytest.approx(1.0, abs=1e-9)
        assert line["label"] in CLASS_NAMES
        assert line["verdict"] in ("real", "fake", "inconclusive")
        assert line["calibrated"] is True
        assert line["calibration_version"] == 1
    # Training fitted calibration and the gate on the best checkpoint.
    assert summary["calibration"]["version"] == 1
    assert load_checkpoint(Path(summary["best"])).reference is not None


def test_cli_predict_reports_bad_files_per_line(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    code = main(
        ["predict", "--checkpoint", str(tiny_checkpoint), str(text), str(tmp_path / "missing.jpg")]
    )
    assert code == 1
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert "not a readable image" in first["error"]
    assert second["error"] == "file not found"


def test_cli_reports_a_missing_checkpoint_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["predict", "--checkpoint", str(tmp_path / "none.safetensors"), "x.jpg"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("veracity predict: error: metadata file")
    assert "\n" not in err


def test_cli_evaluate_prints_verdict_rates(
    tiny_dataset: Path, tiny_checkpoint: Path, capsys
) -> None:
    args = ["evaluate", "--data", str(tiny_dataset), "--checkpoint", str(tiny_checkpoint)]
    assert main([*args, "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 12
    overall = result["overall"]
    assert overall["correct_rate"] + overall["inconclusive_rate"] + overall[
        "wrong_rate"
    ] == pytest.approx(1.0)
    assert sum(sum(row.values()) for row in overall["confusion"].values()) == 12


def test_cli_make_sample_data(tmp_path: Path, capsys) -> None:
    args = [
        "make-sample-data",
        "--out",
        str(tmp_path),
        "--seed",
        "5",
        "--train-per-class",
        "2",
        "--val-per-class",
        "1",
        "--size",
        "48",
    ]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 6


def test_checkpoint_metadata_records_versions(tmp_path: Path) -> None:
    model = create_classifier(TINY_ARCH)
    meta = save_checkpoint(
        tmp_path / "m.safetensors",
        model,
        architecture=TINY_ARCH,
        class_names=CLASS_NAMES,
        preprocess=resolve_preprocess_config(model),
        model_name="m",
        model_version="1.2.3",
    )
    assert meta.model_version == "1.2.3"
    assert meta.created_at.tzinfo is not None


def test_cli_evaluate_writes_a_report_with_plots(
    tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "report"
    args = ["evaluate", "--data", str(tiny_dataset), "--checkpoint", str(tiny_checkpoint)]
    assert main([*args, "--report", str(out), "--natural-photos", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    names = {Path(p).name for p in summary["report"]}
    assert names == {
        "report.json",
        "roc.png",
        "reliability.png",
        "by_size.png",
        "by_jpeg_quality.png",
        "confusion.png",
    }
    for name in names - {"report.json"}:
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["images"] == 12
    assert set(report["overall"]["confusion"]["fake"]) == {"real", "fake", "inconclusive"}
    assert list(report["by_size"]) == ["<=160"]  # the tiny data set is 80 px
    assert list(report["by_jpeg_quality"]) == ["png"]
    assert {"ece_before_calibration", "ece_after_calibration", "roc_auc"} <= set(report["overall"])
    assert set(report["reliability"]) == {"before_calibration", "after_calibration"}
    photos = report["natural_photographs"]
    assert photos["summary"]["images"] >= 20
    assert len(photos["items"]) == photos["summary"]["images"]


def test_frozen_blocks_keep_their_pretrained_weights_and_statistics(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    torch.manual_seed(9)
    donor = create_classifier(TINY_ARCH, num_classes=10).state_dict()
    weights = tmp_path / "backbone.pth"
    torch.save(donor, weights)
    config = tiny_config(tiny_dataset, tmp_path / "run", pretrained=weights, freeze_blocks=1)
    trained = load_checkpoint(train(config, progress=False).last_checkpoint).model.state_dict()
    frozen = [key for key in donor if key.startswith(("conv_stem.", "bn1.", "blocks.0."))]
    assert any(key.endswith("running_mean") for key in frozen)
    assert all(torch.equal(trained[key], donor[key]) for key in frozen)
    # The rest trained, statistics included: a later stage and its batch norm moved.
    assert not torch.equal(
        trained["blocks.1.0.conv_exp.weight"], donor["blocks.1.0.conv_exp.weight"]
    )
    assert not torch.equal(trained["bn2.running_mean"], donor["bn2.running_mean"])


def test_freezing_more_stages_than_the_model_has_is_refused(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_dataset, tmp_path / "run", freeze_blocks=99)
    with pytest.raises(ConfigurationError, match="--freeze-blocks 99"):
        train(config, progress=False)
