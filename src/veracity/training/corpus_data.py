"""Training on the real-photo corpus (``veracity train --corpus``).

Training draws real/fake pairs from the corpus's train split, new edits every epoch
(``PairDataset.set_epoch``); the checkpoint is chosen on the pairs of the validate split,
drawn once at a fixed epoch so every epoch is measured on the same images. The split is
by source, so validation measures photographs from packages the model never saw.
Afterwards the gate's reference statistics are fitted on train-split pairs and the
calibration and the gate's threshold on the validate split's, image by image, as
``calibrate_checkpoint`` does with an ImageFolder's train/ and val/.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from veracity.checkpoint import CalibrationMetadata, load_checkpoint, read_metadata
from veracity.corpus.manifest import default_manifest
from veracity.drift.profile import DriftProfile
from veracity.errors import DatasetError
from veracity.preprocess import ImageTransform, PreprocessConfig
from veracity.training.calibrate import fit_stored_calibration
from veracity.training.config import TrainConfig
from veracity.training.data import epoch_generator, seed_worker
from veracity.training.drift_profile import profile_uploads
from veracity.training.pairs import (
    FAKE,
    REAL,
    PairDataset,
    PairOptions,
    build_pair_dataset,
    collate_pairs,
    collate_pairs_with_masks,
)
from veracity.training.uploads import pair_uploads, unlabelled

# Training epochs count from 1, so the pairs drawn for validation and calibration are
# never the ones a training epoch drew.
VALIDATION_EPOCH = 0
# A fake crop where the edit covers less than this share (a sliver at its border) is
# labelled real: its label would otherwise say "edited" about pixels that are not.
MIN_EDIT_SHARE = 0.01
# The gate's reference statistics: whole train-split pairs, at most this many (each is
# 16 or so patches through the model; a few hundred images describe the training data).
REFERENCE_PAIRS = 128


class WholePairs(Dataset[tuple[torch.Tensor, int]]):
    """Pairs at the epoch they had when this was made, as the service reads them: item 2i
    is pair i's whole real image, 2i+1 its fake, each through the checkpoint's transform
    ((patches, 3, H, W)) with its label. ``pairs`` limits them to the first N of a fixed
    shuffle.

    Validation and calibration measure what the service answers for a whole image, not
    for a crop placed on the edit: the pooling over the patch grid is part of the score.
    The finished pairs are made once and kept (uint8, about 5 MB a pair): every epoch's
    validation reads the same images without redrawing edits.
    """

    def __init__(self, pairs: PairDataset, preprocess: PreprocessConfig, limit: int | None = None):
        self.pairs = pairs
        self.transform = ImageTransform(preprocess)
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(pairs.epoch))
        self.numbers = (
            [int(i) for i in order[:limit]] if limit is not None else list(range(len(pairs)))
        )
        self._made: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return 2 * len(self.numbers)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        number, side = divmod(index, 2)
        pair = self.numbers[number]
        if pair not in self._made:
            finished = self.pairs.finished(pair)
            self._made[pair] = (finished.real, finished.fake)
        image = Image.fromarray(self._made[pair][side])
        return self.transform(image), (REAL, FAKE)[side]


def _sources(pairs: PairDataset) -> dict[str, int]:
    counts = Counter(base.entry.source for base in pairs.media.bases)
    return dict(sorted(counts.items()))


def pair_options(training: Mapping[str, Any]) -> PairOptions:
    """The pairs a run with this training record (TrainConfig's fields) draws."""
    return PairOptions(
        seed=int(training["seed"]),
        video_share=float(training["video_share"]),
        crops_per_pair=int(training["crops_per_pair"]),
        min_edit_share=MIN_EDIT_SHARE,
        self_blend=bool(training["self_blend"]),
    )


def recorded_pairs(checkpoint: Path, root: Path, split: str) -> PairDataset:
    """A split's pairs as the run that trained ``checkpoint`` on the corpus under ``root``
    drew them for validation and calibration (its training record: seed, video share,
    manifest), at the epoch no training epoch drew. The validate split's are what it was
    calibrated on; the train split's what its gate's reference statistics were fitted on.

    Raises:
        DatasetError: the checkpoint was not trained on the corpus.
    """
    metadata = read_metadata(checkpoint)
    training = metadata.training
    if training.get("corpus_dir") is None:
        raise DatasetError(
            f"{checkpoint} was not trained on the corpus (its training record has no "
            "corpus_dir); use --data"
        )
    manifest = training.get("corpus_manifest")
    pairs = build_pair_dataset(
        root,
        split,
        pair_options(training),
        manifest=Path(manifest) if manifest else default_manifest(),
        preprocess=metadata.preprocess.to_config(),
    )
    pairs.set_epoch(VALIDATION_EPOCH)
    return pairs


class CorpusData:
    """Pairs from the corpus under ``config.corpus_dir``, both splits checked against the
    manifest (``require_corpus``) before anything is trained."""

    def __init__(self, config: TrainConfig, preprocess: PreprocessConfig) -> None:
        assert config.corpus_dir is not None  # TrainConfig checks that one source is given
        self.config = config
        self.root = config.corpus_dir
        self.manifest = config.corpus_manifest or default_manifest()
        options = pair_options(vars(config))
        self.preprocess = preprocess
        self.train, self.validate = (
            build_pair_dataset(
                self.root, split, options, manifest=self.manifest, preprocess=preprocess
            )
            for split in ("train", "validate")
        )
        self.validate.set_epoch(VALIDATION_EPOCH)
        self.whole_validate = WholePairs(self.validate, preprocess)
        self.pairs_per_batch = max(1, config.batch_size // (2 * config.crops_per_pair))

    def epoch_order(self, epoch: int) -> list[int]:
        """The pairs training epoch ``epoch`` draws, in order (capped at pairs_per_epoch)."""
        order = torch.randperm(len(self.train), generator=epoch_generator(self.config.seed, epoch))
        return [int(i) for i in order[: self.config.pairs_per_epoch]]

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.epoch_order(1)) / self.pairs_per_batch)

    def train_loader(self, epoch: int) -> DataLoader[Any]:
        self.train.set_epoch(epoch)
        order = self.epoch_order(epoch)
        return DataLoader(
            self.train,
            batch_size=self.pairs_per_batch,
            sampler=order,
            drop_last=len(order) > self.pairs_per_batch,
            num_workers=self.config.workers,
            collate_fn=collate_pairs_with_masks if self.config.dense_weight > 0 else collate_pairs,
            worker_init_fn=seed_worker,
        )

    def validation_loader(self) -> DataLoader[Any]:
        # In this process: the whole pairs it makes are kept for the next epoch's pass.
        return DataLoader(self.whole_validate, batch_size=2, num_workers=0)

    def info(self) -> dict[str, Any]:
        """The corpus record: manifest digest, sources per split (real images each), edit
        kinds per split (training: summed over every planned epoch), video share."""
        train_kinds: Counter[str] = Counter()
        for epoch in range(1, self.config.epochs + 1):
            self.train.set_epoch(epoch)
            train_kinds.update(self.train.kind_at(i) for i in self.epoch_order(epoch))
        validate_kinds = Counter(self.validate.kind_at(i) for i in range(len(self.validate)))
        corpus = {
            "root": str(self.root),
            "manifest": str(self.manifest),
            "manifest_sha256": hashlib.sha256(self.manifest.read_bytes()).hexdigest(),
            "sources": {"train": _sources(self.train), "validate": _sources(self.validate)},
            "pairs": {"train_per_epoch": len(self.epoch_order(1)), "validate": len(self.validate)},
            "edit_kinds": {
                "train": dict(sorted(train_kinds.items())),
                "validate": dict(sorted(validate_kinds.items())),
            },
            "video_share": self.config.video_share,
            "validation_epoch": VALIDATION_EPOCH,
        }
        return {
            "train_images": 2 * len(self.epoch_order(1)),
            "val_images": 2 * len(self.validate),
            "corpus": corpus,
        }

    def calibrate(
        self, checkpoint: Path, *, device: torch.device, progress: bool
    ) -> CalibrationMetadata:
        cfg = self.config
        # The gate's reference: train-split pairs at an epoch no training epoch drew.
        self.train.set_epoch(VALIDATION_EPOCH)
        train_sources = ", ".join(_sources(self.train))
        validate_sources = ", ".join(_sources(self.validate))
        digest = hashlib.sha256(self.manifest.read_bytes()).hexdigest()
        stored = fit_stored_calibration(
            checkpoint,
            load_checkpoint(checkpoint, device=device, with_calibration=False),
            reference=WholePairs(self.train, self.preprocess, REFERENCE_PAIRS),
            calibration=self.whole_validate,
            data=(
                f"corpus {self.root} (manifest sha256 {digest}): gate reference on the train "
                f"split's pairs ({train_sources}); calibration and gate threshold on the "
                f"validate split's pairs ({validate_sources})"
            ),
            held_out=f"the corpus's validate split ({validate_sources})",
            device=device,
            batch_size=cfg.batch_size,
            workers=0,  # the validate pairs are kept in this process
            seed=cfg.seed,
            progress=progress,
        )
        self.profile(checkpoint, device=device)
        return stored

    def profile(self, checkpoint: Path, *, device: torch.device) -> DriftProfile:
        """The drift profile: the calibrated checkpoint's answers on the validate pairs."""
        sources = ", ".join(_sources(self.validate))
        return profile_uploads(
            checkpoint,
            unlabelled(pair_uploads(self.validate)),
            data=f"corpus {self.root}: the validate split's pairs ({sources})",
            device=device,
        )


def profile_corpus(checkpoint: Path, corpus_dir: Path, *, device: torch.device) -> DriftProfile:
    """Rebuild the drift profile of a checkpoint trained with ``train --corpus`` on its
    validate pairs, drawn as its run drew them (the training record in its metadata).

    Raises:
        DatasetError: the checkpoint was not trained on the corpus.
    """
    pairs = recorded_pairs(checkpoint, corpus_dir, "validate")
    return profile_uploads(
        checkpoint,
        unlabelled(pair_uploads(pairs)),
        data=f"corpus {corpus_dir}: the validate split's pairs ({', '.join(_sources(pairs))})",
        device=device,
    )
