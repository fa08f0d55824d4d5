"""The training loop: AdamW with warm-up and cosine decay, per-epoch validation, checkpoints."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from veracity import __version__
from veracity.checkpoint import CheckpointPaths, load_checkpoint, save_checkpoint
from veracity.devices import select_device
from veracity.errors import ConfigurationError
from veracity.models import (
    CLASS_NAMES,
    create_classifier,
    dense_logits,
    freeze_early_blocks,
    resolve_preprocess_config,
    timm_version,
)
from veracity.preprocess import PatchPooling, PreprocessConfig, pool_patch_logits
from veracity.training.config import TrainConfig
from veracity.training.data import FolderData, TrainingData
from veracity.training.metrics import ValidationMetrics, compute_metrics
from veracity.training.state import (
    TrainingProgress,
    load_training_state,
    save_training_state,
    state_path_for,
)

logger = logging.getLogger(__name__)

BEST = "best.safetensors"
LAST = "last.safetensors"


@dataclass(frozen=True)
class TrainResult:
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict[str, float]]
    calibration: dict[str, Any] | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, *, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``base_lr``, then cosine decay to zero at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _ranking_key(metrics: ValidationMetrics, *, by_auc: bool = False) -> list[float]:
    # Best = highest accuracy, then highest ROC-AUC, then lowest loss; or ROC-AUC first
    # (corpus training: the calibration that follows sets the operating points, so how
    # well scores rank real below fake matters, not accuracy at the uncalibrated 0.5).
    auc = metrics.roc_auc if not math.isnan(metrics.roc_auc) else 0.0
    if by_auc:
        return [auc, metrics.accuracy, -metrics.loss]
    return [metrics.accuracy, auc, -metrics.loss]


def image_logits(
    model: nn.Module, images: torch.Tensor, device: torch.device, pooling: PatchPooling = "mean"
) -> torch.Tensor:
    """Per-image logits for a batch (N, patches, 3, H, W): patch logits pooled as the
    predictor pools them; a 4-D batch is one patch per image."""
    if images.ndim == 4:
        single: torch.Tensor = model(images.to(device)).float()
        return single
    patches = images.shape[1]
    logits: torch.Tensor = model(images.flatten(0, 1).to(device)).float()
    return pool_patch_logits(logits, patches, pooling, CLASS_NAMES.index("fake"))


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    pooling: PatchPooling = "mean",
) -> ValidationMetrics:
    model.eval()
    logits, labels = [], []
    with torch.inference_mode():
        for images, targets in loader:
            logits.append(image_logits(model, images, device, pooling).cpu())
            labels.append(targets)
    return compute_metrics(torch.cat(logits), torch.cat(labels))


def create_training_data(config: TrainConfig, preprocess: PreprocessConfig) -> TrainingData:
    """The data ``config`` names, checked before any training step.

    Raises:
        DatasetError: the ImageFolder layout is wrong or an image is unreadable.
        CorpusError: a corpus file is missing or changed, or a split has no images.
    """
    if config.corpus_dir is not None:
        from veracity.training.corpus_data import CorpusData

        return CorpusData(config, preprocess)
    return FolderData(config, preprocess)


class TrainingLoss:
    """Cross-entropy on each crop's label, plus, with masks and ``dense_weight`` > 0, on each
    cell of the feature map against the share of its pixels the edit covers.

    A crop's label says only that an edit is somewhere in it; the cells say where, so one
    crop teaches the model dozens of local decisions, and the per-patch scores the
    explanation shows are trained for what they are read as (CAT-Net and TruFor train
    localisation the same way, with a per-pixel map).
    """

    def __init__(self, dense_weight: float) -> None:
        self.dense_weight = dense_weight

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        masks: torch.Tensor | None,
    ) -> torch.Tensor:
        if masks is None or self.dense_weight == 0:
            loss: torch.Tensor = nn.functional.cross_entropy(model(images), targets)
            return loss
        logits, cells = dense_logits(model, images)
        grid = (int(cells.shape[1]), int(cells.shape[2]))
        share = nn.functional.adaptive_avg_pool2d(masks.float().unsqueeze(1), grid)
        fake = share.squeeze(1).flatten()
        soft = torch.stack([1.0 - fake, fake], dim=1)
        dense = nn.functional.cross_entropy(cells.reshape(-1, cells.shape[-1]), soft)
        return nn.functional.cross_entropy(logits, targets) + self.dense_weight * dense


class Trainer:
    """One training run. ``run()`` returns where the best and last checkpoints were written."""

    def __init__(self, config: TrainConfig, *, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.device = select_device(config.device)

    def _build_model(self) -> tuple[nn.Module, str, PreprocessConfig]:
        cfg = self.config
        if cfg.resume is None:
            model = create_classifier(cfg.architecture, pretrained_file=cfg.pretrained)
            preprocess = resolve_preprocess_config(model, image_size=cfg.image_size)
            if cfg.preprocess_mode == "patches":
                preprocess = dataclasses.replace(
                    preprocess,
                    mode="patches",
                    patch_grid=cfg.patch_grid,
                    patch_pooling=cfg.patch_pooling,
                    max_side=cfg.max_side,
                )
            if cfg.face_crops:
                preprocess = dataclasses.replace(preprocess, face_crop=True)
            return model, cfg.architecture, preprocess
        checkpoint = load_checkpoint(cfg.resume, with_calibration=False)
        arch = checkpoint.metadata.architecture
        if arch != cfg.architecture:
            raise ConfigurationError(
                f"--resume checkpoint is {arch!r} but --arch is {cfg.architecture!r}; "
                "pass the same architecture"
            )
        return checkpoint.model, arch, checkpoint.preprocess

    def run(self) -> TrainResult:
        cfg = self.config
        seed_everything(cfg.seed)
        model, architecture, preprocess = self._build_model()
        model.to(self.device)
        data = create_training_data(cfg, preprocess)
        val_loader = data.validation_loader()

        frozen = freeze_early_blocks(model, cfg.freeze_blocks) if cfg.freeze_blocks else []
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        progress = self._starting_progress(optimizer)
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        best_path, last_path = cfg.out_dir / BEST, cfg.out_dir / LAST
        history: list[dict[str, float]] = []
        training_info = self._training_info(data)

        for epoch in range(progress.epoch + 1, cfg.epochs + 1):
            step, train_loss = self._train_epoch(
                model, data, optimizer, epoch=epoch, step=progress.step, frozen=frozen
            )
            metrics = evaluate(model, val_loader, self.device, preprocess.patch_pooling)
            record = {"epoch": float(epoch), "train_loss": train_loss}
            record |= metrics.as_dict()
            history.append(record)
            self._report_epoch(epoch, record, metrics)
            score = _ranking_key(metrics, by_auc=cfg.corpus_dir is not None)
            save_args: dict[str, Any] = {
                "architecture": architecture,
                "class_names": CLASS_NAMES,
                "preprocess": preprocess,
                "model_name": cfg.model_name,
                "model_version": cfg.model_version,
                "metrics": metrics.as_dict() | {"epoch": float(epoch)},
                "training": training_info | {"epoch": epoch},
            }
            # A run resumed into a new directory still gets a best checkpoint there.
            if score > progress.best_score or not best_path.exists():
                save_checkpoint(best_path, model, **save_args)
            progress = TrainingProgress(
                epoch=epoch, step=step, best_score=max(score, progress.best_score)
            )
            save_checkpoint(last_path, model, **save_args)
            save_training_state(state_path_for(last_path), optimizer, progress)
        return TrainResult(
            best_checkpoint=best_path,
            last_checkpoint=last_path,
            history=history,
            calibration=self._calibrate(data, best_path) if cfg.calibrate else None,
        )

    def _starting_progress(self, optimizer: torch.optim.Optimizer) -> TrainingProgress:
        cfg = self.config
        progress = TrainingProgress(epoch=0, step=0, best_score=[-math.inf])
        if cfg.resume is not None:
            resume_weights = CheckpointPaths.resolve(cfg.resume).weights
            progress = load_training_state(state_path_for(resume_weights), optimizer)
        if progress.epoch >= cfg.epochs:
            raise ConfigurationError(
                f"nothing to train: the run already completed {progress.epoch} of "
                f"{cfg.epochs} epochs; raise --epochs to continue"
            )
        return progress

    def _train_epoch(
        self,
        model: nn.Module,
        data: TrainingData,
        optimizer: torch.optim.Optimizer,
        *,
        epoch: int,
        step: int,
        frozen: list[nn.Module],
    ) -> tuple[int, float]:
        """One pass over the training set from schedule step ``step``: the step reached and
        the mean training loss. ``frozen`` modules stay in eval mode, so their batch-norm
        statistics stay the pretrained ones."""
        cfg = self.config
        steps_per_epoch = data.steps_per_epoch
        total_steps = steps_per_epoch * cfg.epochs
        warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
        loss_of = TrainingLoss(cfg.dense_weight)
        train_loader = data.train_loader(epoch)
        model.train()
        for module in frozen:
            module.eval()
        running = 0.0
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            disable=None if self.progress else True,
            leave=False,
        )
        for images, targets, *masks in bar:
            lr = lr_at(step, base_lr=cfg.lr, warmup_steps=warmup_steps, total_steps=total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if images.ndim == 5:
                # Every patch carries its image's label.
                targets = targets.repeat_interleave(images.shape[1])
                images = images.flatten(0, 1)
            mask = masks[0].to(self.device) if masks else None
            loss = loss_of(model, images.to(self.device), targets.to(self.device), mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            optimizer.step()
            step += 1
            running += loss.item()
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
        return step, running / max(1, len(train_loader))

    def _report_epoch(
        self, epoch: int, record: dict[str, float], metrics: ValidationMetrics
    ) -> None:
        logger.info("epoch finished", extra=record)
        if self.progress:
            tqdm.write(
                f"epoch {epoch}: train_loss={record['train_loss']:.4f} "
                f"val_loss={metrics.loss:.4f} val_acc={metrics.accuracy:.4f} "
                f"val_auc={metrics.roc_auc:.4f}"
            )

    def _calibrate(self, data: TrainingData, best_path: Path) -> dict[str, Any]:
        # The checkpoint that will be served is the best one; "last" exists to resume.
        fitted = data.calibrate(best_path, device=self.device, progress=self.progress)
        calibration: dict[str, Any] = fitted.model_dump(mode="json")
        return calibration

    def _training_info(self, data: TrainingData) -> dict[str, Any]:
        cfg = asdict(self.config)
        info = {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.items()}
        info |= data.info() | {
            "device": str(self.device),
            "veracity_version": __version__,
            "torch_version": torch.__version__,
            "timm_version": timm_version(),
        }
        return info


def train(config: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Run one training job described by ``config``."""
    return Trainer(config, progress=progress).run()
