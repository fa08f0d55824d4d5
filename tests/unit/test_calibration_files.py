"""Calibration stored beside the weights: round trip, integrity checks, refits, patches."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from veracity.checkpoint import CheckpointPaths, file_sha256, load_checkpoint, read_metadata
from veracity.cli import main
from veracity.errors import CheckpointError
from veracity.preprocess import (
    PATCH_ALIGN,
    ImageTransform,
    PatchTransform,
    PreprocessConfig,
    patch_origins,
    pool_patch_logits,
)
from veracity.training.calibrate import calibrate_checkpoint

CPU = torch.device("cpu")


@pytest.fixture
def calibrated(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> Path:
    """A copy of the tiny checkpoint with a calibration fitted on the tiny dataset."""
    target = tmp_path / "model.safetensors"
    shutil.copy(tiny_checkpoint, target)
    shutil.copy(tiny_checkpoint.with_suffix(".json"), target.with_suffix(".json"))
    calibrate_checkpoint(target, tiny_dataset, device=CPU, batch_size=8, progress=False)
    return target


def test_reference_statistics_round_trip(calibrated: Path) -> None:
    paths = CheckpointPaths.resolve(calibrated)
    assert paths.calibration.name == "model.calibration.safetensors"
    meta = read_metadata(calibrated)
    assert meta.format_version == 2
    calibration = meta.calibration
    assert calibration is not None
    assert calibration.version == 1
    assert calibration.reference_sha256 == file_sha256(paths.calibration)
    assert calibration.method in ("temperature", "platt")
    assert calibration.ood_threshold > 0
    assert "quantile" in calibration.ood_rule
    assert {"ece_before", "ece_after"} <= set(calibration.metrics)
    loaded = load_checkpoint(calibrated)
    assert loaded.reference is not None
    # Pixel statistics, test_efficientnet's five stages, the pooled penultimate features.
    assert loaded.reference.layers == [8, 16, 24, 32, 48, 64, 256]
    for stage, width in zip(loaded.reference.stages, loaded.reference.layers, strict=True):
        assert stage.class_means.shape == (2, width)
        assert stage.precision.shape == (width, width)
        assert stage.scale > 0
    # Paths given as the calibration file itself resolve to the same checkpoint.
    assert CheckpointPaths.resolve(paths.calibration) == paths


def test_tampered_reference_statistics_are_refused(calibrated: Path) -> None:
    path = CheckpointPaths.resolve(calibrated).calibration
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="modified or belongs to another calibration"):
        load_checkpoint(calibrated)


def test_missing_reference_statistics_are_named(calibrated: Path) -> None:
    CheckpointPaths.resolve(calibrated).calibration.unlink()
    with pytest.raises(CheckpointError, match=r"calibration file .* not found"):
        load_checkpoint(calibrated)
    # Training can still resume from the weights alone.
    assert load_checkpoint(calibrated, with_calibration=False).reference is None


def test_a_calibration_edited_in_the_metadata_is_refused(calibrated: Path) -> None:
    paths = CheckpointPaths.resolve(calibrated)
    raw = json.loads(paths.metadata.read_text())
    raw["calibration"]["reference_sha256"] = "0" * 64
    paths.metadata.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(calibrated)


def test_cli_refits_under_a_new_version_without_touching_the_weights(
    calibrated: Path, tiny_dataset: Path, capsys
) -> None:
    weights = file_sha256(calibrated)
    # A corrupt old calibration does not stop a refit: it is what a refit replaces.
    CheckpointPaths.resolve(calibrated).calibration.write_bytes(b"garbage")
    args = ["calibrate", "--checkpoint", str(calibrated), "--data", str(tiny_dataset)]
    assert main([*args, "--device", "cpu", "--no-progress", "--batch-size", "8"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["version"] == 2
    assert file_sha256(calibrated) == weights
    assert load_checkpoint(calibrated).metadata.calibration.version == 2


def test_calibrate_without_a_validation_split_says_so(
    calibrated: Path, tmp_path: Path, capsys
) -> None:
    args = ["calibrate", "--checkpoint", str(calibrated), "--data", str(tmp_path / "none")]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 2
    assert "split folder" in capsys.readouterr().err


def test_format_1_checkpoints_load_uncalibrated(tiny_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    assert loaded.metadata.calibration is None
    assert loaded.reference is None
    assert loaded.calibrator.method == "identity"


PATCHES = PreprocessConfig(
    input_size=(3, 64, 64),
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    mode="patches",
    patch_grid=3,
)


@pytest.mark.parametrize("length", [64, 100, 128, 255, 1024, 4000])
def test_patch_origins_are_aligned_and_inside(length: int) -> None:
    starts = patch_origins(length, 64, 3)
    assert len(starts) == 3
    assert all(s % PATCH_ALIGN == 0 and 0 <= s <= max(0, length - 64) for s in starts)
    assert starts == sorted(starts)


def test_patches_are_native_pixels_whatever_the_size() -> None:
    rng = np.random.default_rng(0)
    transform = ImageTransform(PATCHES)
    for size in ((128, 128), (1024, 768), (3000, 200)):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        tensor = transform(Image.fromarray(pixels))
        assert tensor.shape == (9, 3, 64, 64)
        # The first patch is the image's top-left corner, unresampled.
        expected = (pixels[:64, :64].transpose(2, 0, 1) / 255.0 - 0.5) / 0.25
        torch.testing.assert_close(tensor[0], torch.from_numpy(expected).float())


def test_an_image_smaller_than_a_patch_is_upsampled_to_fit() -> None:
    tensor = ImageTransform(PATCHES)(Image.new("RGB", (40, 20), (10, 200, 30)))
    assert tensor.shape == (9, 3, 64, 64)


def test_patches_mode_decodes_jpegs_in_full_and_needs_two_patches() -> None:
    assert PATCHES.min_decode_size is None
    assert PATCHES.min_side == 128
    assert PATCHES.patches_per_image == 9


def test_top_half_pooling_keeps_the_most_suspicious_patches() -> None:
    from veracity.preprocess import pool_patch_logits

    # One image, four patches: fake-minus-real scores 3, -1, 1, -3.
    logits = torch.tensor([[0.0, 3.0], [1.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    torch.testing.assert_close(pool_patch_logits(logits, 4, "mean"), logits.mean(0, keepdim=True))
    top = pool_patch_logits(logits, 4, "top_half")
    torch.testing.assert_close(top, torch.tensor([[0.0, 2.0]]))  # patches 1 and 3
    # An odd count keeps the larger half; one patch is itself.
    assert pool_patch_logits(logits[:3], 3, "top_half").shape == (1, 2)
    torch.testing.assert_close(pool_patch_logits(logits[:1], 1, "top_half"), logits[:1])


def test_max_side_shrinks_an_image_so_the_grid_tiles_all_of_it() -> None:
    config = PreprocessConfig(
        input_size=(3, 64, 64),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        mode="patches",
        patch_grid=4,
        max_side=256,
    )
    transform = PatchTransform(config)
    image = Image.new("RGB", (1000, 600))
    fitted = transform.fit(image)
    assert fitted.size == (256, 154)
    tops = patch_origins(fitted.height, 64, 4)
    lefts = patch_origins(fitted.width, 64, 4)
    covered = np.zeros((fitted.height, fitted.width), dtype=bool)
    for top in tops:
        for left in lefts:
            covered[top : top + 64, left : left + 64] = True
    # Every pixel up to the last 16-pixel snap is read by some patch.
    assert covered[: fitted.height // 16 * 16, : fitted.width // 16 * 16].all()
    assert transform(image).shape == (16, 3, 64, 64)
    # Smaller images are not touched.
    assert transform.fit(Image.new("RGB", (200, 120))).size == (200, 120)


def test_max_pooling_is_the_most_suspicious_patch() -> None:
    logits = torch.tensor([[0.0, 1.0], [0.0, 3.0], [2.0, 0.0], [0.0, 0.5]])
    pooled = pool_patch_logits(logits, 4, "max")
    assert pooled.tolist() == [[0.0, 3.0]]
