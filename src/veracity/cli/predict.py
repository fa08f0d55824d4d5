"""``predict``: one JSON line per image or video, the numbers a lone request would get."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.cli.arguments import (
    add_checkpoint,
    add_device,
    add_policy,
    add_sampling,
    load_predictor,
    video_plan,
)
from veracity.errors import VeracityError
from veracity.video.aggregate import AggregationRule
from veracity.video.contrast import TemporalContrast
from veracity.video.segments import SustainedRun

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands
    from veracity.inference.predictor import Prediction, Predictor
    from veracity.provenance.reader import CredentialReader


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "predict", help="print one JSON line per image: calibrated probabilities and a verdict"
    )
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    add_checkpoint(p)
    p.add_argument(
        "--backend", choices=("torch", "onnx"), default="torch", help="default: %(default)s"
    )
    p.add_argument(
        "--export-dir", type=Path, default=None, help="ONNX export cache (default: a temp dir)"
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "int8", "auto"),
        default="fp32",
        help="int8: the graph `veracity quantize` built and checked in the export cache "
        "(needs --backend onnx; FP32 if there is none or it failed its check); auto: INT8 "
        "only where it is also faster here (default: %(default)s)",
    )
    p.add_argument(
        "--check-robustness",
        action="store_true",
        help="also score each image re-encoded as JPEG 75 and halved; report stability",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="add each image's explanation: the grid of per-region probabilities (as "
        "POST /infer?explain=true); videos have none",
    )
    add_sampling(p)
    p.add_argument(
        "--aggregation",
        choices=("confident", "mean", "max", "top_k"),
        default="confident",
        help="how a video's frame probabilities become its own (default: %(default)s)",
    )
    _add_video_rule(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar for videos")
    p.add_argument(
        "--trust-anchors",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="a PEM bundle of C2PA trust anchors (repeatable): content credentials signed "
        "under one are 'valid', others 'valid_untrusted' (as VERACITY_PROVENANCE_TRUST_ANCHORS)",
    )
    p.add_argument(
        "--no-provenance",
        action="store_true",
        help="do not read the files' content credentials (C2PA)",
    )
    add_policy(p)
    add_device(p)
    p.set_defaults(handler=_cmd_predict)


def _add_video_rule(p: argparse.ArgumentParser) -> None:
    """The service's sustained-run rule (VERACITY_VIDEO_RUN_*) and temporal contrast
    (VERACITY_VIDEO_CONTRAST_MIN_STEP), with the same defaults."""
    p.add_argument(
        "--run-min-frames",
        type=int,
        default=SustainedRun.min_frames,
        help="fake frames a run needs to make a video fake (default: %(default)s; at least 2)",
    )
    p.add_argument(
        "--run-min-duration",
        type=float,
        default=SustainedRun.min_duration_s,
        metavar="S",
        help="seconds such a run must cover (default: %(default)s)",
    )
    p.add_argument(
        "--run-max-gap",
        type=int,
        default=SustainedRun.max_gap,
        help="other frames in a row a run may hold between two fake ones (default: %(default)s)",
    )
    p.add_argument(
        "--contrast-min-step",
        type=float,
        default=TemporalContrast.min_step,
        metavar="LOGITS",
        help="temporal contrast: how far above the rest of its shot a stretch must score to "
        "make a video fake (default: %(default)s; 0: off)",
    )


def _cmd_predict(args: argparse.Namespace) -> int:
    from veracity.provenance.options import ProvenanceOptions, load_trust_anchors
    from veracity.provenance.reader import CredentialReader

    try:
        anchors = load_trust_anchors(args.trust_anchors)
    except ValueError as e:
        print(f"veracity predict: --trust-anchors: {e}", file=sys.stderr)
        return 2
    # Checked before any work (ConfigurationError: exit 2), not once per video.
    rule = AggregationRule(
        method=args.aggregation,
        run=SustainedRun(args.run_min_frames, args.run_min_duration, args.run_max_gap),
        contrast=TemporalContrast(min_step=args.contrast_min_step),
    )
    credentials = CredentialReader(
        ProvenanceOptions(enabled=not args.no_provenance, trust_anchors=anchors)
    )
    try:
        return _predict_files(args, rule, credentials)
    finally:
        credentials.close()


def _predict_files(
    args: argparse.Namespace, rule: AggregationRule, credentials: CredentialReader
) -> int:
    from veracity.answers import VerdictFields
    from veracity.images import image_media_type
    from veracity.serving.recording import video_media_type

    predictor = load_predictor(args, args.backend, args.export_dir, args.precision)
    calibration = predictor.checkpoint.metadata.calibration
    failures = 0
    for path in args.files:
        record: dict[str, object] = {"path": str(path)}
        try:
            if _is_video(path):
                record |= _predict_video(args, rule, predictor, path)
                container = record["video"]["container"]  # type: ignore[index]
                record |= _credited(record, credentials, path, video_media_type(container))
                print(json.dumps(record), flush=True)
                continue
            # One image per forward pass: the numbers are what a lone /infer request gets.
            prediction, verdict = predictor.assess(path, robustness_check=args.check_robustness)
        except FileNotFoundError:
            record["error"] = "file not found"
            failures += 1
        except VeracityError as e:
            record["error"] = e.message
            failures += 1
        else:
            fields = VerdictFields.build(
                verdict,
                thresholds=predictor.policy.thresholds,
                calibration_version=calibration.version if calibration else None,
            )
            record |= {
                "fake_prob": verdict.fake_prob,
                "real_prob": verdict.real_prob,
                "label": verdict.label,
            } | fields.model_dump(mode="json")
            if args.explain:
                record["explanation"] = _explanation(predictor, prediction, verdict.faces)
            record |= _credited(record, credentials, path, image_media_type(path.read_bytes()))
        print(json.dumps(record), flush=True)
    return 1 if failures else 0


def _credited(
    record: dict[str, object], credentials: CredentialReader, path: Path, media_type: str
) -> dict[str, object]:
    """The fields the file's content credentials give its record (as the service's)."""
    from veracity.answers import ReasonModel, provenance_update

    provenance = asyncio.run(credentials.read(path.read_bytes(), media_type))
    reasons = [ReasonModel(**r) for r in record["reasons"]]  # type: ignore[attr-defined]
    update = provenance_update(record["verdict"], reasons, provenance)  # type: ignore[arg-type]
    return {
        "verdict": update["verdict"],
        "model_verdict": update["model_verdict"],
        "reasons": [r.model_dump(mode="json") for r in update["reasons"]],
        "provenance": None if provenance is None else provenance.model_dump(mode="json"),
    }


def _explanation(
    predictor: Predictor, prediction: Prediction, faces: int | None
) -> dict[str, object]:
    from dataclasses import asdict

    from veracity.inference.explanation import explain

    return asdict(explain(predictor.config, prediction, faces))


def _is_video(path: Path) -> bool:
    from veracity.video.container import detect_container

    try:
        with path.open("rb") as f:
            return detect_container(f.read(12)) is not None
    except OSError:
        return False


def _predict_video(
    args: argparse.Namespace, rule: AggregationRule, predictor: Predictor, path: Path
) -> dict[str, object]:
    from tqdm import tqdm

    from veracity.answers import VideoResponse
    from veracity.video.analysis import analyse_video

    plan, limits = video_plan(args)
    with tqdm(
        desc=path.name, unit="frame", disable=args.no_progress, file=sys.stderr, leave=False
    ) as bar:

        def progress(done: int, planned: int) -> None:
            bar.total = planned
            bar.update(done - bar.n)

        result = analyse_video(
            predictor,
            path,
            plan=plan,
            rule=rule,
            limits=limits,
            on_frame=progress,
        )
    calibration = predictor.checkpoint.metadata.calibration
    meta = predictor.checkpoint.metadata
    response = VideoResponse.build(
        result,
        request_id="",
        thresholds=predictor.policy.thresholds,
        calibration_version=calibration.version if calibration else None,
        model_name=meta.model_name,
        model_version=meta.model_version,
    )
    return response.model_dump(mode="json", exclude={"request_id"})
