"""The eval transform: identical to timm's, and identical between training and serving."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from veracity.checkpoint import load_checkpoint
from veracity.devices import select_device
from veracity.errors import ConfigurationError
from veracity.images import load_rgb
from veracity.inference.predictor import Predictor
from veracity.models import CLASS_NAMES, reference_eval_transform
from veracity.preprocess import EvalTransform, PreprocessConfig
from veracity.training.dataset import create_eval_dataset, scan_split

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

# The two implementations compute (x/255 - mean)/std in a different order of float32
# operations; 1e-5 is a few ULPs at the magnitudes involved (|x| < 3).
TOLERANCE = 1e-5


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) % 256], axis=-1)
    noisy = base + rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.mark.parametrize(
    ("size", "interpolation", "crop_pct", "crop_mode"),
    [
        ((1280, 720), "bicubic", 0.875, "center"),
        ((720, 1280), "bilinear", 0.95, "center"),
        ((257, 255), "bicubic", 1.0, "center"),
        ((640, 480), "lanczos", 0.9, "squash"),
        ((100, 60), "nearest", 0.875, "center"),
    ],
)
def test_matches_timms_eval_transform(size, interpolation, crop_pct, crop_mode) -> None:
    config = PreprocessConfig(
        input_size=(3, 224, 224),
        interpolation=interpolation,
        crop_pct=crop_pct,
        crop_mode=crop_mode,
        **IMAGENET,
    )
    image = photo(*size)
    ours = EvalTransform(config)(image)
    reference = reference_eval_transform(config)(image)
    assert ours.shape == reference.shape == (3, 224, 224)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, atol=TOLERANCE, rtol=0)


def test_training_validation_and_serving_see_identical_tensors(
    tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    predictor = Predictor(checkpoint, select_device("cpu"))
    # PNG sample data plus large JPEG frames (where reduced-scale decoding applies).
    for label in CLASS_NAMES:
        folder = tmp_path / "val" / label
        folder.mkdir(parents=True)
        for source in (tiny_dataset / "val" / label).glob("*.png"):
            (folder / source.name).write_bytes(source.read_bytes())
        photo(1920, 1080, seed=len(label)).save(folder / "frame.jpg", quality=90)
    samples = scan_split(tmp_path, "val", CLASS_NAMES)
    validation = create_eval_dataset(samples, checkpoint.preprocess)  # as the trainer builds it
    assert any(path.suffix == ".jpg" for path, _ in samples)
    for index, (path, _) in enumerate(samples):
        served = predictor.preprocess(path.read_bytes())
        validated, _ = validation[index]
        assert torch.equal(served, validated), path


# Reduced-scale JPEG decoding (DCT-domain 1/2, 1/4, 1/8) against a full decode of the same
# file, after the eval transform, in normalised units (one grey level is about 0.017):
# measured mean |diff| 0.002-0.006, max 0.02-0.10 on 12-megapixel photos.
DRAFT_MEAN_TOLERANCE = 0.01
DRAFT_MAX_TOLERANCE = 0.2


@pytest.mark.parametrize("size", [96, 224])
def test_reduced_scale_jpeg_decoding_stays_within_tolerance(size: int) -> None:
    config = PreprocessConfig(input_size=(3, size, size), **IMAGENET)
    transform = EvalTransform(config)
    buffer = io.BytesIO()
    photo(3000, 2000, seed=size).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    reduced = load_rgb(data, min_size=config.min_decode_size)
    full = load_rgb(data)
    assert min(reduced.size) >= config.min_decode_size
    assert reduced.size[0] < full.size[0]  # it did decode at a reduced scale
    diff = (transform(reduced) - transform(full)).abs()
    assert diff.mean().item() <= DRAFT_MEAN_TOLERANCE
    assert diff.max().item() <= DRAFT_MAX_TOLERANCE


def test_other_formats_are_reduced_within_the_same_tolerance() -> None:
    config = PreprocessConfig(input_size=(3, 96, 96), **IMAGENET)
    transform = EvalTransform(config)
    buffer = io.BytesIO()
    photo(1200, 900).save(buffer, format="PNG")
    reduced = load_rgb(buffer.getvalue(), min_size=config.min_decode_size)
    full = load_rgb(buffer.getvalue())
    assert reduced.size[0] < full.size[0]  # shrunk while converted to RGB
    assert min(reduced.size) >= 2 * (config.min_decode_size or 0)
    diff = (transform(reduced) - transform(full)).abs()
    assert diff.mean().item() <= DRAFT_MEAN_TOLERANCE
    assert diff.max().item() <= DRAFT_MAX_TOLERANCE


def test_small_jpegs_are_decoded_at_full_size() -> None:
    buffer = io.BytesIO()
    photo(300, 200).save(buffer, format="JPEG")
    assert load_rgb(buffer.getvalue(), min_size=256).size == (300, 200)


def test_serving_a_jpeg_upload_matches_a_file_on_disk(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    predictor = Predictor(load_checkpoint(tiny_checkpoint), select_device("cpu"))
    path = tmp_path / "frame.jpg"
    photo(320, 180).save(path, format="JPEG", quality=90)
    assert torch.equal(predictor.preprocess(path), predictor.preprocess(path.read_bytes()))
    assert torch.equal(
        predictor.preprocess(path), predictor.preprocess(io.BytesIO(path.read_bytes()))
    )


def test_values_are_normalised_with_the_configured_statistics() -> None:
    config = PreprocessConfig(
        input_size=(3, 8, 8), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0
    )
    white = EvalTransform(config)(Image.new("RGB", (8, 8), (255, 255, 255)))
    black = EvalTransform(config)(Image.new("RGB", (8, 8), (0, 0, 0)))
    assert torch.allclose(white, torch.ones_like(white))
    assert torch.allclose(black, -torch.ones_like(black))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_size", (1, 224, 224), "input_size"),
        ("crop_pct", 0.0, "crop_pct"),
        ("crop_pct", 1.5, "crop_pct"),
        ("interpolation", "cubic", "interpolation"),
        ("crop_mode", "border", "crop_mode"),
        ("std", (0.0, 1.0, 1.0), "std"),
    ],
)
def test_invalid_configurations_are_named(field, value, message) -> None:
    values = {"input_size": (3, 224, 224), **IMAGENET} | {field: value}
    with pytest.raises(ConfigurationError, match=message):
        PreprocessConfig(**values)


def test_non_rgb_input_is_refused_rather_than_silently_converted() -> None:
    config = PreprocessConfig(input_size=(3, 8, 8), **IMAGENET)
    with pytest.raises(ConfigurationError, match="mode L"):
        EvalTransform(config)(Image.new("L", (8, 8)))


def test_decoded_upload_feeds_the_transform(tmp_path: Path) -> None:
    config = PreprocessConfig(input_size=(3, 32, 32), **IMAGENET)
    buffer = io.BytesIO()
    photo(64, 48).convert("CMYK").save(buffer, format="JPEG")
    tensor = EvalTransform(config)(load_rgb(buffer.getvalue()))
    assert tensor.shape == (3, 32, 32)
    assert torch.isfinite(tensor).all()
