"""What a training run reads: an ImageFolder dataset or the real-photo corpus.

Either one (``trainer.create_training_data`` picks it) gives the loop the same four
things: a loader for each training epoch, a fixed loader for validation, the record of
what was trained on (for the checkpoint's metadata), and the fit of calibration and the
out-of-distribution gate on its held-out part.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from veracity.checkpoint import CalibrationMetadata
from veracity.models import CLASS_NAMES
from veracity.preprocess import PreprocessConfig
from veracity.training.augment import create_augmentation
from veracity.training.config import TrainConfig
from veracity.training.dataset import ImageFolderDataset, create_eval_dataset, scan_split


def seed_worker(worker_id: int) -> None:
    # Each DataLoader worker gets a distinct, reproducible seed derived by torch.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # The shuffle order is a function of (seed, epoch), so a resumed run sees the same
    # batches as an uninterrupted one.
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class TrainingData(Protocol):
    @property
    def steps_per_epoch(self) -> int: ...

    def train_loader(self, epoch: int) -> DataLoader[Any]:
        """Batches of (images, labels) for training epoch ``epoch`` (counted from 1)."""
        ...

    def validation_loader(self) -> DataLoader[Any]:
        """The same batches of (images, labels) every time it is asked for."""
        ...

    def info(self) -> dict[str, Any]:
        """What the run was trained and validated on, for the checkpoint's metadata."""
        ...

    def calibrate(
        self, checkpoint: Path, *, device: torch.device, progress: bool
    ) -> CalibrationMetadata:
        """Fit and store ``checkpoint``'s calibration and gate on the held-out part."""
        ...


class FolderData:
    """``ROOT/{train,val}/{real,fake}``: augmented training images, validation images
    transformed as the service transforms them."""

    def __init__(self, config: TrainConfig, preprocess: PreprocessConfig) -> None:
        assert config.data_dir is not None  # TrainConfig checks that one source is given
        self.config = config
        self.data_dir = config.data_dir
        train_tf = create_augmentation(
            config.augment,
            preprocess,
            scale=config.aug_scale,
            hflip=config.hflip,
            color_jitter=config.color_jitter,
            patches=config.train_patches,
            jpeg_prob=config.jpeg_augment,
            jpeg_quality=config.jpeg_quality,
        )
        self.train = ImageFolderDataset(scan_split(self.data_dir, "train", CLASS_NAMES), train_tf)
        self.validate = create_eval_dataset(
            scan_split(self.data_dir, "val", CLASS_NAMES), preprocess
        )

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.config.batch_size)

    def train_loader(self, epoch: int) -> DataLoader[Any]:
        cfg = self.config
        return DataLoader(
            self.train,
            batch_size=cfg.batch_size,
            shuffle=True,
            drop_last=len(self.train) > cfg.batch_size,
            num_workers=cfg.workers,
            generator=epoch_generator(cfg.seed, epoch),
            worker_init_fn=seed_worker,
        )

    def validation_loader(self) -> DataLoader[Any]:
        cfg = self.config
        return DataLoader(self.validate, batch_size=cfg.batch_size, num_workers=cfg.workers)

    def info(self) -> dict[str, Any]:
        return {"train_images": len(self.train), "val_images": len(self.validate)}

    def calibrate(
        self, checkpoint: Path, *, device: torch.device, progress: bool
    ) -> CalibrationMetadata:
        from veracity.training.calibrate import calibrate_checkpoint

        cfg = self.config
        return calibrate_checkpoint(
            checkpoint,
            self.data_dir,
            device=device,
            batch_size=cfg.batch_size,
            workers=cfg.workers,
            seed=cfg.seed,
            jpeg_quality=cfg.jpeg_quality,
            progress=progress,
        )
