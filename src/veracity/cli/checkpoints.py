"""``export``, ``evaluate`` and ``convert-legacy``: what a checkpoint becomes or is shown to do."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.cli.arguments import add_checkpoint, add_device, add_policy, load_predictor
from veracity.errors import ConfigurationError

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands
    from veracity.inference.predictor import Predictor


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (cached under its weights' SHA-256)",
        description="Writes OUT_DIR/<weights-sha256>.onnx and a sidecar JSON; a valid existing "
        "export is reused. Serve it with VERACITY_BACKEND=onnx and VERACITY_EXPORT_DIR=OUT_DIR.",
    )
    add_checkpoint(p)
    p.add_argument("--out-dir", type=Path, required=True, help="the export cache directory")
    p.set_defaults(handler=_cmd_export)

    _add_evaluate(sub)

    p = sub.add_parser(
        "convert-legacy", help="convert a legacy .pth state dict to a safe checkpoint"
    )
    p.add_argument("legacy", type=Path, metavar="PTH")
    p.add_argument("--out", type=Path, required=True, help="NAME.safetensors to write")
    p.add_argument("--arch", default="efficientnet_b0", help="default: %(default)s")
    p.add_argument("--image-size", type=int, default=None, help="default: the architecture's")
    p.add_argument("--model-name", default="veracity-legacy", help="default: %(default)s")
    p.add_argument("--model-version", default="0.0.0", help="default: %(default)s")
    p.set_defaults(handler=_cmd_convert_legacy)


def _add_evaluate(sub: Subcommands) -> None:
    p = sub.add_parser(
        "evaluate",
        help="verdicts, abstention and calibration of a checkpoint on a dataset split or on "
        "the held-out photographs",
        description="Runs every image through the same verdict pipeline as /infer. With "
        "--data: prints a JSON summary; with --report DIR also writes DIR/report.json and PNG "
        "plots (ROC, reliability before/after calibration, verdicts by size and by JPEG "
        "quality, confusion matrix with an inconclusive column). With --heldout: judges the "
        "held-out photographs as shipped, re-saved as JPEG 90 and edited with each edit kind, "
        "prints verdicts per source and per edit kind and the goals as PASS/FAIL lines; with "
        "--report DIR also writes DIR/report.json and heldout_*.png. Its video arm makes "
        "H.264 and VP9 web clips of a few of the photographs, real and edited between two "
        "timestamps, and judges them as POST /infer/video does.",
    )
    judged = p.add_mutually_exclusive_group(required=True)
    judged.add_argument("--data", type=Path, help="dataset root (ImageFolder layout)")
    judged.add_argument(
        "--heldout",
        type=Path,
        metavar="DIR",
        help="the held-out photographs `veracity fetch-corpus --heldout` fetched (make heldout: "
        "data/heldout); never used for training, tuning or calibration",
    )
    p.add_argument("--split", default="val", help="with --data (default: %(default)s)")
    p.add_argument("--report", type=Path, default=None, metavar="DIR", help="write the report")
    p.add_argument(
        "--natural-photos",
        action="store_true",
        help="also judge the natural photographs installed packages ship (all real; never "
        "used for training): scikit-image, scikit-learn, matplotlib",
    )
    p.add_argument(
        "--sample", action="store_true", help="with --heldout: only the CI sample's photographs"
    )
    p.add_argument(
        "--heldout-manifest",
        type=Path,
        default=None,
        help="default: the list shipped with veracity",
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=1920,
        help="with --heldout: longest side of the re-saved and edited copies (default: "
        "%(default)s; smaller photographs keep their size)",
    )
    p.add_argument(
        "--kind",
        action="append",
        default=None,
        help="with --heldout: only this edit kind (repeatable; default: every kind a "
        "photograph alone allows)",
    )
    p.add_argument("--seed", type=int, default=0, help="with --heldout: the edits' seed")
    p.add_argument(
        "--videos",
        type=int,
        default=None,
        metavar="N",
        help="with --heldout: photographs made into web clips, each a real and an edited "
        "clip per codec, about 40 s a clip on two cores (default: 2 with --sample, else 4; "
        "0: no video arm)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_checkpoint(p)
    add_policy(p)
    add_device(p)
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_export(args: argparse.Namespace) -> int:
    from veracity.checkpoint import load_checkpoint
    from veracity.export import ensure_onnx

    checkpoint = load_checkpoint(args.checkpoint)
    path = ensure_onnx(checkpoint, args.out_dir)
    print(json.dumps({"onnx": str(path), "weights_sha256": checkpoint.metadata.weights_sha256}))
    return 0


def _checkpoint_record(args: argparse.Namespace, predictor: Predictor) -> dict[str, object]:
    meta = predictor.checkpoint.metadata
    return {
        "path": str(args.checkpoint),
        "model_name": meta.model_name,
        "model_version": meta.model_version,
        "weights_sha256": meta.weights_sha256,
        "calibration_version": meta.calibration.version if meta.calibration else None,
        "thresholds": {"real": args.real_threshold, "fake": args.fake_threshold},
    }


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.heldout is not None:
        return _evaluate_heldout(args)
    from veracity.evaluation.photos import natural_photographs
    from veracity.evaluation.report import build_report, evaluate_items, write_report
    from veracity.models import CLASS_NAMES
    from veracity.training.dataset import scan_split

    predictor = load_predictor(args)
    samples = [
        (path, CLASS_NAMES[index]) for path, index in scan_split(args.data, args.split, CLASS_NAMES)
    ]
    progress = not args.no_progress
    results = evaluate_items(predictor, samples, progress=progress, desc=f"{args.split} split")
    photos = None
    if args.natural_photos:
        found = [(path, "real") for path in natural_photographs()]
        photos = evaluate_items(predictor, found, progress=progress, desc="natural photographs")
    report = build_report(
        results,
        checkpoint=_checkpoint_record(args, predictor)
        | {"data": str(args.data), "split": args.split},
        photos=photos,
    )
    summary: dict[str, object] = {"images": len(results), "overall": report["overall"]}
    if photos is not None:
        summary["natural_photographs"] = report["natural_photographs"]["summary"]
    if args.report is not None:
        written = write_report(report, args.report)
        summary["report"] = [str(p) for p in written]
    print(json.dumps(summary))
    return 0


def _evaluate_heldout(args: argparse.Namespace) -> int:
    from veracity.corpus.fetch import require_corpus
    from veracity.corpus.heldout import read_heldout_manifest
    from veracity.evaluation.heldout import PHOTO_KINDS, HeldOutOptions, judge_heldout
    from veracity.evaluation.heldout_report import (
        build_heldout_report,
        format_summary,
        write_heldout_report,
    )
    from veracity.evaluation.heldout_video import HeldOutVideoOptions, judge_heldout_videos

    try:
        kinds = tuple(args.kind or PHOTO_KINDS)
        options = HeldOutOptions(max_side=args.max_side, kinds=kinds, seed=args.seed)
        # A clip is 32 frames through the model (about 1.3 s each for the demo model on
        # two cores), so a photograph's four clips cost about three minutes.
        videos = args.videos if args.videos is not None else 2 if args.sample else 4
        video_options = HeldOutVideoOptions(
            videos=videos, max_side=args.max_side, kinds=kinds, seed=args.seed
        )
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    photos = read_heldout_manifest(args.heldout_manifest, sample=args.sample)
    fetch = "veracity fetch-corpus --heldout" + (" --sample" if args.sample else "")
    require_corpus([p.entry for p in photos], args.heldout, fetch=f"{fetch} --out {args.heldout}")
    predictor = load_predictor(args)
    progress = not args.no_progress
    items = judge_heldout(predictor, photos, args.heldout, options, progress=progress)
    clips = None
    if video_options.videos:
        clips = judge_heldout_videos(
            predictor, photos, args.heldout, video_options, progress=progress
        )
    record = _checkpoint_record(args, predictor) | {
        "heldout": str(args.heldout),
        "sample": args.sample,
    }
    report = build_heldout_report(
        items, checkpoint=record, options=options, clips=clips, video_options=video_options
    )
    print(format_summary(report))
    if args.report is not None:
        written = write_heldout_report(report, args.report)
        print("report: " + ", ".join(str(p) for p in written))
    return 0


def _cmd_convert_legacy(args: argparse.Namespace) -> int:
    from veracity.checkpoint import read_legacy_state_dict, save_checkpoint
    from veracity.models import (
        CLASS_NAMES,
        check_state_dict_fits,
        create_classifier,
        resolve_preprocess_config,
    )

    state_dict = read_legacy_state_dict(args.legacy)
    model = create_classifier(args.arch)
    check_state_dict_fits(model, state_dict, architecture=args.arch)
    model.load_state_dict(state_dict)
    metadata = save_checkpoint(
        args.out,
        model,
        architecture=args.arch,
        class_names=CLASS_NAMES,
        preprocess=resolve_preprocess_config(model, image_size=args.image_size),
        model_name=args.model_name,
        model_version=args.model_version,
        training={"converted_from": str(args.legacy)},
    )
    print(json.dumps({"out": str(args.out), "weights_sha256": metadata.weights_sha256}))
    return 0
