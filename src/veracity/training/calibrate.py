"""Fitting a checkpoint's calibration and out-of-distribution gate on held-out data.

Run at the end of ``veracity train`` on the best checkpoint, and by ``veracity calibrate``
for an existing one. From a dataset root with ``train/`` and ``val/``:

1. reference statistics (class means, tied covariance) of the model's features on the
   training images, each also re-encoded twice as a JPEG, once at a quality from the lower
   and once from the upper half of the range: recompressed uploads are part of the
   distribution the model serves, and one random re-encode left the gate flagging 5% of
   images recompressed at quality 75;
2. on the validation images (and their re-encoded copies): the score-to-probability map
   (veracity.verdicts.calibration) and the gate's threshold (a high quantile of their
   distances, veracity.verdicts.ood).

Both are written beside the weights (``save_calibration``) under a new calibration version.

``fit_stored_calibration`` does steps 1 and 2 for any two data sets of (image, label):
``train --corpus`` fits on the corpus's pairs (``veracity.training.corpus_data``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from veracity.checkpoint import (
    CalibrationMetadata,
    Checkpoint,
    load_checkpoint,
    read_metadata,
    save_calibration,
)
from veracity.drift.profile import DriftProfile
from veracity.errors import DatasetError, InvalidImageError
from veracity.images import load_rgb, reencode_jpeg
from veracity.models import CLASS_NAMES, ScoringModel, feature_layers
from veracity.preprocess import ImageTransform, PatchPooling, pool_patch_logits
from veracity.training.dataset import Sample, scan_split
from veracity.training.drift_profile import profile_uploads
from veracity.training.uploads import unlabelled, variant_uploads
from veracity.verdicts.calibration import fit_calibration
from veracity.verdicts.ood import (
    THRESHOLD_MARGIN,
    THRESHOLD_QUANTILE,
    choose_threshold,
    fit_reference,
)

Variant = tuple[Path, int, int | None]  # path, label, JPEG quality of the re-encode (None: as is)


class _VariantDataset(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, items: list[Variant], transform: Callable[[Image.Image], torch.Tensor]):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label, quality = self.items[index]
        try:
            image = load_rgb(path)
        except InvalidImageError as e:
            raise DatasetError(f"unreadable image {path}: {e.message}") from e
        if quality is not None:
            image = reencode_jpeg(image, quality)
        return self.transform(image), label


def _with_variants(samples: list[Sample], seed: int, quality: tuple[int, int]) -> list[Variant]:
    """Each image as it is, and re-encoded at a low and at a high quality of the range."""
    rng = random.Random(seed)
    low, high = quality
    middle = (low + high) // 2
    items: list[Variant] = []
    for path, label in samples:
        items.append((path, label, None))
        items.append((path, label, rng.randint(low, middle)))
        items.append((path, label, rng.randint(min(middle + 1, high), high)))
    return items


@dataclass(frozen=True)
class _Scored:
    scores: np.ndarray  # (N,) logit_fake - logit_real, patch-averaged
    features: torch.Tensor  # (N * patches, D)
    labels: np.ndarray  # (N,) 1 = fake
    patches: int


def _score(
    model: ScoringModel,
    dataset: Dataset[tuple[torch.Tensor, int]],
    *,
    pooling: PatchPooling,
    device: torch.device,
    batch_size: int,
    workers: int,
    desc: str,
    progress: bool,
) -> _Scored:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    real, fake = CLASS_NAMES.index("real"), CLASS_NAMES.index("fake")
    scores, features, labels = [], [], []
    patches = 1
    with torch.inference_mode():
        for images, targets in tqdm(loader, desc=desc, unit="batch", disable=not progress):
            if images.ndim == 4:  # one crop per image
                images = images.unsqueeze(1)
            patches = images.shape[1]
            logits, pooled = model(images.flatten(0, 1).to(device))
            per_image = pool_patch_logits(logits.double().cpu(), patches, pooling, fake)
            scores.append((per_image[:, fake] - per_image[:, real]).numpy())
            features.append(pooled.float().cpu())
            labels.append((targets == fake).numpy().astype(np.float64))
    return _Scored(
        scores=np.concatenate(scores),
        features=torch.cat(features),
        labels=np.concatenate(labels),
        patches=patches,
    )


def calibrate_checkpoint(
    checkpoint: Path,
    data_dir: Path,
    *,
    device: torch.device,
    batch_size: int = 32,
    workers: int = 0,
    seed: int = 0,
    jpeg_quality: tuple[int, int] = (60, 95),
    progress: bool = True,
) -> CalibrationMetadata:
    """Fit and store calibration and the OOD gate for ``checkpoint``; return what was stored.

    Raises:
        DatasetError: ``data_dir`` lacks train/ or val/ (or they are unreadable), or the
            validation split is too small to calibrate on.
        CheckpointError: the checkpoint cannot be loaded.
    """
    loaded = load_checkpoint(checkpoint, device=device, with_calibration=False)
    transform = ImageTransform(loaded.preprocess)
    train = _with_variants(scan_split(data_dir, "train", CLASS_NAMES), seed, jpeg_quality)
    val = validation_variants(data_dir, seed, jpeg_quality)
    stored = fit_stored_calibration(
        checkpoint,
        loaded,
        reference=_VariantDataset(train, transform),
        calibration=_VariantDataset(val, transform),
        data=str(data_dir),
        held_out=str(data_dir / "val"),
        device=device,
        batch_size=batch_size,
        workers=workers,
        seed=seed,
        progress=progress,
    )
    profile_uploads(
        checkpoint,
        unlabelled(variant_uploads(val)),
        data=f"{data_dir / 'val'} (with JPEG re-encodes)",
        device=device,
    )
    return stored


def validation_variants(
    data_dir: Path, seed: int, jpeg_quality: tuple[int, int] = (60, 95)
) -> list[Variant]:
    """What calibration is fitted on: DATA/val's images and their JPEG re-encodes."""
    return _with_variants(scan_split(data_dir, "val", CLASS_NAMES), seed + 1, jpeg_quality)


def fit_stored_calibration(
    checkpoint: Path,
    loaded: Checkpoint,
    *,
    reference: Dataset[tuple[torch.Tensor, int]],
    calibration: Dataset[tuple[torch.Tensor, int]],
    data: str,
    held_out: str,
    device: torch.device,
    batch_size: int = 32,
    workers: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> CalibrationMetadata:
    """Fit the gate's reference statistics on ``reference`` and the calibration and gate
    threshold on ``calibration`` (items: an image as the model reads it, (3, H, W) or
    (patches, 3, H, W), and its label), and store them beside ``checkpoint``'s weights.
    ``data`` and ``held_out`` say in the metadata and in errors what they were.

    Raises:
        DatasetError: ``calibration`` is too small or one-sided to calibrate on.
    """
    previous = read_metadata(checkpoint).calibration
    model = ScoringModel(loaded.model).eval()
    on_reference, on_calibration = (
        _score(
            model,
            dataset,
            pooling=loaded.preprocess.patch_pooling,
            device=device,
            batch_size=batch_size,
            workers=workers,
            desc=desc,
            progress=progress,
        )
        for dataset, desc in ((reference, "reference"), (calibration, "calibration"))
    )
    reference_labels = torch.as_tensor(on_reference.labels, dtype=torch.long)
    stats = fit_reference(
        on_reference.features,
        reference_labels.repeat_interleave(on_reference.patches),
        classes=len(CLASS_NAMES),
        layers=feature_layers(loaded.model, loaded.preprocess.input_size),
        validation=on_calibration.features,
    )
    distances = stats.image_scores(on_calibration.features, on_calibration.patches).numpy()
    threshold = choose_threshold(distances)
    try:
        fit = fit_calibration(on_calibration.scores, on_calibration.labels, seed=seed)
    except ValueError as e:
        raise DatasetError(f"cannot calibrate on {held_out}: {e}") from e
    metadata = CalibrationMetadata(
        version=(previous.version + 1) if previous is not None else 1,
        fitted_at=datetime.now(UTC),
        method=fit.calibrator.method,
        slope=fit.calibrator.slope,
        intercept=fit.calibrator.intercept,
        reference_sha256="0" * 64,  # replaced by save_calibration with the file's hash
        ood_threshold=threshold,
        ood_rule=(f"{THRESHOLD_QUANTILE:g} quantile of validation scores x {THRESHOLD_MARGIN:g}"),
        data=data,
        images={"reference": len(on_reference.labels), "calibration": len(on_calibration.labels)},
        metrics={
            "ece_before": fit.ece_before,
            "ece_after": fit.ece_after,
            "nll_before": fit.nll_before,
            "nll_after": fit.nll_after,
            "nll_temperature": fit.candidates["temperature"],
            "nll_platt": fit.candidates["platt"],
            "val_ood_rate": float(np.mean(distances > threshold)),
        },
    )
    stored = save_calibration(checkpoint, stats, metadata).calibration
    assert stored is not None
    return stored


def profile_folder(
    checkpoint: Path, data_dir: Path, *, seed: int, device: torch.device
) -> DriftProfile:
    """Rebuild ``checkpoint``'s drift profile on DATA/val (as calibration saw it)."""
    return profile_uploads(
        checkpoint,
        unlabelled(variant_uploads(validation_variants(data_dir, seed))),
        data=f"{data_dir / 'val'} (with JPEG re-encodes)",
        device=device,
    )
