"""The training run's configuration, built once by the CLI and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from veracity.errors import ConfigurationError
from veracity.models import DEFAULT_ARCHITECTURE
from veracity.preprocess import POOLINGS, PatchPooling, PreprocessMode
from veracity.runtime import DevicePreference
from veracity.training.augment import AugmentMode


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; recorded in each checkpoint's metadata."""

    data_dir: Path | None  # an ImageFolder root; None when training on the corpus
    out_dir: Path
    architecture: str = DEFAULT_ARCHITECTURE
    image_size: int | None = None  # None: the architecture's default input size
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    seed: int = 0
    workers: int = 0
    device: DevicePreference = "auto"
    # "forensic" never resamples differently from evaluation (see training/augment.py);
    # "timm" is timm's RandomResizedCrop pipeline, tuned by aug_scale and color_jitter.
    augment: AugmentMode = "forensic"
    aug_scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    color_jitter: float = 0.0
    resume: Path | None = None
    pretrained: Path | None = None
    model_name: str = "veracity"
    model_version: str = "0.1.0"
    # "patches": native-resolution patches (see preprocess.py); "resize": timm's transform.
    preprocess_mode: PreprocessMode = "patches"
    patch_grid: int = 3  # evaluation and serving: patch_grid x patch_grid patches per image
    patch_pooling: PatchPooling = "top_half"  # see preprocess.pool_patch_logits
    # The data are face crops (veracity extract-frames --faces): serving detects faces and
    # crops them the same way before the model reads them.
    face_crops: bool = False
    train_patches: int = 4  # random patches per training image and step
    jpeg_augment: float = 0.5  # probability of a JPEG re-encode before cropping
    jpeg_quality: tuple[int, int] = (60, 95)
    calibrate: bool = True  # fit calibration and the OOD gate on the best checkpoint
    # Real/fake pairs from the fetched real-photo corpus instead of an ImageFolder
    # (veracity.training.corpus_data): trained on its train split, validated on validate.
    corpus_dir: Path | None = None
    corpus_manifest: Path | None = None  # None: the manifest shipped with veracity
    video_share: float = 0.2  # share of pairs encoded as web video, not the image finish
    pairs_per_epoch: int | None = None  # None: one pair per real image of the train split
    crops_per_pair: int = 1  # corpus: crops per pair (the first holds the edit)
    # Corpus: weight of the per-cell loss (each cell of the feature map against the share
    # of its pixels the edit covers); 0 trains on the crops' labels alone.
    dense_weight: float = 0.0
    max_side: int | None = None  # patches: see PreprocessConfig.max_side
    self_blend: bool = False  # corpus: self-blend real images with a face (needs CenterFace)
    freeze_blocks: int = 0  # the stem and this many first stages stay as pretrained

    def __post_init__(self) -> None:
        if (self.data_dir is None) == (self.corpus_dir is None):
            raise ConfigurationError(
                "train on either an ImageFolder dataset (--data) or the corpus (--corpus): "
                "exactly one of them"
            )
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup_epochs": self.warmup_epochs >= 0,
            "workers": self.workers >= 0,
            "image_size": self.image_size is None or self.image_size >= 32,
            "aug_scale": 0 < self.aug_scale[0] <= self.aug_scale[1] <= 1,
            "hflip": 0 <= self.hflip <= 1,
            "augment": self.augment in ("forensic", "timm"),
            "color_jitter": self.color_jitter >= 0,
            "preprocess_mode": self.preprocess_mode in ("patches", "resize"),
            "patch_grid": 1 <= self.patch_grid <= 8,
            "patch_pooling": self.patch_pooling in POOLINGS,
            "train_patches": 1 <= self.train_patches <= 64,
            "jpeg_augment": 0 <= self.jpeg_augment <= 1,
            "jpeg_quality": 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100,
            "video_share": 0 <= self.video_share <= 1,
            "pairs_per_epoch": self.pairs_per_epoch is None or self.pairs_per_epoch >= 1,
            "crops_per_pair": 1 <= self.crops_per_pair <= 16,
            "dense_weight": self.dense_weight >= 0,
            "max_side": self.max_side is None or self.max_side >= 32,
            "freeze_blocks": self.freeze_blocks >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigurationError(f"invalid training settings: {values}")
