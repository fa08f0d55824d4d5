"""``quantize``: a checkpoint's INT8 graph, built and checked against FP32 into the export
cache a replica reads (VERACITY_EXPORT_DIR)."""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.cli.arguments import add_checkpoint

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands
    from veracity.training.uploads import Labelled


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "quantize",
        help="build a checkpoint's INT8 graph and check it against FP32",
        description="Quantises the checkpoint's ONNX graph (static, per channel) with "
        "activation ranges calibrated on its training data, then judges the validation "
        "data with both graphs: INT8 serves (VERACITY_PRECISION=int8 or auto) only if "
        "verdicts agree on at least 99%% and the calibration error grows by at most 0.02. "
        "Graph and record are cached under the weights' SHA-256 in the export directory. "
        "Exit code 1 when the check fails (the record, with its figures, is kept).",
    )
    add_checkpoint(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", type=Path, help="dataset root: calibrate on train/, check on val/"
    )
    source.add_argument(
        "--corpus",
        type=Path,
        help="the real-photo corpus a checkpoint was trained on (`train --corpus`): "
        "calibrate on train-split pairs, check on the validate split's",
    )
    p.add_argument(
        "--export-dir",
        type=Path,
        default=None,
        help="the export cache the service reads (default: VERACITY_EXPORT_DIR's default)",
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=32,
        help="images whose patches (4 each) calibrate the ranges (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.set_defaults(handler=_cmd_quantize)


def _folder_data(root: Path, seed: int) -> tuple[Iterable[Labelled], Iterable[Labelled], str, str]:
    from veracity.models import CLASS_NAMES
    from veracity.training.calibrate import validation_variants
    from veracity.training.dataset import scan_split
    from veracity.training.uploads import variant_uploads

    # Shuffled, so the first images read calibrate on both classes; read lazily, one file
    # at a time.
    train = [(path, label, None) for path, label in scan_split(root, "train", CLASS_NAMES)]
    random.Random(seed).shuffle(train)
    return (
        variant_uploads(train),
        variant_uploads(validation_variants(root, seed)),
        f"{root / 'train'}",
        f"{root / 'val'} (with JPEG re-encodes)",
    )


def _corpus_data(
    checkpoint: Path, root: Path
) -> tuple[Iterable[Labelled], Iterable[Labelled], str, str]:
    from veracity.training.corpus_data import recorded_pairs
    from veracity.training.uploads import pair_uploads

    train = recorded_pairs(checkpoint, root, "train")
    validate = recorded_pairs(checkpoint, root, "validate")
    return (
        pair_uploads(train),
        pair_uploads(validate),
        f"corpus {root}: train-split pairs",
        f"corpus {root}: the validate split's pairs",
    )


def _cmd_quantize(args: argparse.Namespace) -> int:
    from veracity.quantization.build import quantize_checkpoint
    from veracity.runtime import default_export_dir

    if args.corpus is not None:
        calibration, check, calibrated_on, checked_on = _corpus_data(args.checkpoint, args.corpus)
    else:
        calibration, check, calibrated_on, checked_on = _folder_data(args.data, args.seed)
    record = quantize_checkpoint(
        args.checkpoint,
        calibration=(data for data, _ in calibration),
        acceptance=check,
        export_dir=args.export_dir or default_export_dir(),
        calibration_data=calibrated_on,
        acceptance_data=checked_on,
        calibration_images=args.calibration_images,
    )
    acceptance = record.acceptance
    print(
        json.dumps(
            {
                "checkpoint": str(args.checkpoint),
                "passed": acceptance.passed,
                "failures": acceptance.failures,
                **acceptance.model_dump(),
                "fp32_seconds_per_batch": record.fp32_seconds_per_batch,
                "int8_seconds_per_batch": record.int8_seconds_per_batch,
            }
        )
    )
    return 0 if acceptance.passed else 1
