"""``train`` and ``calibrate``: a classifier from a data set, and its calibration refitted."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.cli.arguments import DEFAULT_SAMPLE_DIR, add_checkpoint, add_device

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
    _add_train(sub)
    p = sub.add_parser(
        "calibrate",
        help="refit a checkpoint's calibration and out-of-distribution gate",
        description="Fits the score-to-probability map and the gate's threshold on DATA/val "
        "and the gate's reference statistics on DATA/train, and stores them beside the "
        "weights under a new calibration version (the weights are not changed).",
    )
    add_checkpoint(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="dataset root with train/ and val/ splits")
    source.add_argument(
        "--corpus",
        type=Path,
        help="the real-photo corpus a checkpoint was trained on (`train --corpus`): its "
        "validate pairs, drawn as the run drew them (--profile-only)",
    )
    p.add_argument(
        "--profile-only",
        action="store_true",
        help="keep the calibration; only (re)build the drift profile: the calibration data "
        "judged as the service would judge it, written beside the weights as NAME.drift.json",
    )
    p.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    p.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p)
    p.set_defaults(handler=_cmd_calibrate)


def _add_train(sub: Subcommands) -> None:
    p = sub.add_parser(
        "train", help="train a classifier on an ImageFolder dataset or the real-photo corpus"
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_SAMPLE_DIR,
        help="dataset root with train/{real,fake} and val/{real,fake} (default: %(default)s)",
    )
    source.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="the fetched real-photo corpus (veracity fetch-corpus --out DIR): real/fake "
        "pairs from its train split, new edits each epoch; validated on its validate split",
    )
    _add_corpus_options(p)
    p.add_argument(
        "--out", type=Path, required=True, help="run directory for best/last checkpoints"
    )
    p.add_argument(
        "--arch", default="efficientnet_b0", help="any timm architecture (default: %(default)s)"
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="square input size (default: the architecture's)",
    )
    p.add_argument("--epochs", type=int, default=10, help="default: %(default)s")
    p.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    p.add_argument(
        "--lr", type=float, default=1e-3, help="peak AdamW learning rate (default: %(default)s)"
    )
    p.add_argument("--weight-decay", type=float, default=0.05, help="default: %(default)s")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers (default: %(default)s)"
    )
    _add_augmentation(p)
    _add_model_options(p)
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip fitting calibration and the out-of-distribution gate after training",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p)
    p.set_defaults(handler=_cmd_train)


def _add_corpus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="with --corpus: the corpus manifest (default: the one shipped with veracity)",
    )
    p.add_argument(
        "--video-share",
        type=float,
        default=0.2,
        help="with --corpus: share of pairs encoded as web video (default: %(default)s)",
    )
    p.add_argument(
        "--pairs-per-epoch",
        type=int,
        default=None,
        help="with --corpus: at most this many pairs per epoch (default: one per real image)",
    )
    p.add_argument(
        "--crops-per-pair",
        type=int,
        default=1,
        help="with --corpus: crops taken from each pair, the first where the edit is, the "
        "others anywhere (default: %(default)s)",
    )
    p.add_argument(
        "--self-blend",
        action="store_true",
        help="with --corpus: real images with a face may also be self-blended (SBI); "
        "needs the face detector (veracity fetch-face-detector)",
    )
    p.add_argument(
        "--dense-weight",
        type=float,
        default=0.0,
        help="with --corpus: weight of the per-cell loss that says where the edit is "
        "(default: %(default)s, none)",
    )
    p.add_argument(
        "--freeze-blocks",
        type=int,
        default=0,
        help="keep the stem and this many first stages as pretrained, batch-norm "
        "statistics included (EfficientNet family; default: %(default)s, none)",
    )


def _add_augmentation(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--augment",
        choices=("forensic", "timm"),
        default="forensic",
        help="forensic: eval-identical resize, random crop position and mirror; "
        "timm: timm's RandomResizedCrop pipeline (default: %(default)s)",
    )
    p.add_argument(
        "--aug-scale",
        type=float,
        nargs=2,
        default=(0.08, 1.0),
        metavar=("MIN", "MAX"),
        help="timm mode: random-resized-crop area range (default: 0.08 1.0)",
    )
    p.add_argument("--hflip", type=float, default=0.5, help="default: %(default)s")
    p.add_argument(
        "--color-jitter",
        type=float,
        default=0.0,
        help="timm mode: colour jitter strength (default: %(default)s)",
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """Where the weights start, what the checkpoint is called, and how images reach it."""
    p.add_argument("--resume", type=Path, default=None, help="a run's last.safetensors to continue")
    p.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="local backbone weights (.safetensors or .pth); never downloaded",
    )
    p.add_argument("--model-name", default="veracity", help="default: %(default)s")
    p.add_argument("--model-version", default="0.1.0", help="default: %(default)s")
    p.add_argument(
        "--preprocess",
        choices=("patches", "resize"),
        default="patches",
        help="patches: native-resolution patches, size-independent (default); resize: "
        "timm's resize and centre crop",
    )
    p.add_argument(
        "--patch-grid", type=int, default=3, help="GxG patches per image (default: %(default)s)"
    )
    p.add_argument(
        "--patch-pooling",
        choices=("top_half", "mean", "max"),
        default="top_half",
        help="how patch logits become the image's: the mean of the more suspicious half "
        "(default), of all patches, or the most suspicious patch",
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="patches: shrink a longer side above this first, so the grid tiles the whole "
        "image (default: never shrink)",
    )
    p.add_argument(
        "--face-crops",
        action="store_true",
        help="the data are face crops (extract-frames --faces); serving will detect and "
        "crop faces the same way",
    )
    p.add_argument(
        "--train-patches",
        type=int,
        default=4,
        help="random patches per training image per step (default: %(default)s)",
    )
    p.add_argument(
        "--jpeg-augment",
        type=float,
        default=0.5,
        help="probability of re-encoding a training patch window as JPEG (default: %(default)s)",
    )
    p.add_argument(
        "--jpeg-quality",
        type=int,
        nargs=2,
        default=(60, 95),
        metavar=("MIN", "MAX"),
        help="quality range of those re-encodes (default: 60 95)",
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from veracity.training.config import TrainConfig
    from veracity.training.trainer import train

    config = TrainConfig(
        data_dir=None if args.corpus is not None else args.data,
        out_dir=args.out,
        architecture=args.arch,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
        workers=args.workers,
        device=args.device,
        augment=args.augment,
        aug_scale=(args.aug_scale[0], args.aug_scale[1]),
        hflip=args.hflip,
        color_jitter=args.color_jitter,
        resume=args.resume,
        pretrained=args.pretrained,
        model_name=args.model_name,
        model_version=args.model_version,
        preprocess_mode=args.preprocess,
        patch_grid=args.patch_grid,
        patch_pooling=args.patch_pooling,
        face_crops=args.face_crops,
        train_patches=args.train_patches,
        jpeg_augment=args.jpeg_augment,
        jpeg_quality=(args.jpeg_quality[0], args.jpeg_quality[1]),
        calibrate=not args.no_calibrate,
        corpus_dir=args.corpus,
        corpus_manifest=args.manifest,
        video_share=args.video_share,
        pairs_per_epoch=args.pairs_per_epoch,
        crops_per_pair=args.crops_per_pair,
        dense_weight=args.dense_weight,
        max_side=args.max_side,
        self_blend=args.self_blend,
        freeze_blocks=args.freeze_blocks,
    )
    result = train(config, progress=not args.no_progress)
    print(
        json.dumps(
            {
                "best": str(result.best_checkpoint),
                "last": str(result.last_checkpoint),
                "history": result.history,
                "calibration": result.calibration,
            }
        )
    )
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from veracity.devices import select_device
    from veracity.training.calibrate import profile_folder
    from veracity.training.corpus_data import profile_corpus

    device = select_device(args.device)
    if args.corpus is not None:
        profile = profile_corpus(args.checkpoint, args.corpus, device=device)
    else:
        profile = profile_folder(args.checkpoint, args.data, seed=args.seed, device=device)
    counts = {
        name: dict(zip(s.labels, s.counts, strict=True)) for name, s in profile.signals.items()
    }
    print(
        json.dumps(
            {
                "checkpoint": str(args.checkpoint),
                "answers": profile.answers,
                "data": profile.data,
                "verdicts": counts["verdict"],
            }
        )
    )
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from veracity.devices import select_device
    from veracity.training.calibrate import calibrate_checkpoint

    if args.profile_only:
        return _cmd_profile(args)
    if args.data is None:
        raise SystemExit(
            "veracity calibrate: --corpus goes with --profile-only; refit a "
            "corpus checkpoint's calibration by training it again"
        )
    stored = calibrate_checkpoint(
        args.checkpoint,
        args.data,
        device=select_device(args.device),
        batch_size=args.batch_size,
        workers=args.workers,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(json.dumps({"checkpoint": str(args.checkpoint)} | stored.model_dump(mode="json")))
    return 0
