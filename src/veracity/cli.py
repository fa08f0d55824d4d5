"""The ``veracity`` command: one entry point for data, training, prediction and serving.

Heavy modules (torch, timm) are imported inside each command, so ``veracity --help`` is
instant and a typo in a flag is reported before a framework loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from veracity import __version__
from veracity.errors import ConfigurationError, VeracityError
from veracity.video.plan import SamplingPlan, VideoLimits

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    from veracity.inference.predictor import Predictor

S = TypeVar("S", bound="BaseSettings")

DEFAULT_SAMPLE_DIR = Path("data/sample")


def _cmd_make_sample_data(args: argparse.Namespace) -> int:
    from veracity.sampledata import SampleDataSpec, generate_sample_data

    try:
        spec = SampleDataSpec(
            train_per_class=args.train_per_class,
            val_per_class=args.val_per_class,
            image_size=args.size,
            sizes=tuple(args.sizes or ()),
            jpeg_qualities=tuple(args.jpeg_quality or (None,)),
        )
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    count = generate_sample_data(args.out, seed=args.seed, spec=spec)
    print(json.dumps({"out": str(args.out), "seed": args.seed, "images": count}))
    return 0


def _cmd_make_sample_videos(args: argparse.Namespace) -> int:
    from veracity.video.samples import SampleVideoSpec, write_sample_video

    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(args.count):
        for kind, manipulated in (("real", None), ("manipulated", (2.0, 4.0))):
            path = args.out / f"{kind}_{i:02d}.mp4"
            spec = SampleVideoSpec(seconds=args.seconds, manipulated=manipulated)
            write_sample_video(path, seed=args.seed * 1000 + i * 2 + (kind != "real"), spec=spec)
            written.append({"file": str(path), "manipulated_s": manipulated})
    (args.out / "manifest.json").write_text(json.dumps(written, indent=2) + "\n")
    print(json.dumps({"out": str(args.out), "videos": len(written)}))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from veracity.training.config import TrainConfig
    from veracity.training.trainer import train

    config = TrainConfig(
        data_dir=args.data,
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


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from veracity.devices import select_device
    from veracity.training.calibrate import calibrate_checkpoint

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


def _load_predictor(
    args: argparse.Namespace, backend: str = "torch", export_dir: Path | None = None
) -> Predictor:
    from veracity.checkpoint import load_checkpoint
    from veracity.devices import select_device
    from veracity.inference.predictor import create_predictor
    from veracity.runtime import default_export_dir
    from veracity.verdicts.decision import Thresholds, VerdictPolicy
    from veracity.verdicts.quality import QualityLimits

    target = select_device(args.device)
    loaded = load_checkpoint(args.checkpoint, device=target)
    cache = export_dir or default_export_dir()
    policy = VerdictPolicy(
        thresholds=Thresholds(args.real_threshold, args.fake_threshold),
        quality=QualityLimits(args.min_jpeg_quality, args.min_content_std),
    )
    return create_predictor(
        loaded,
        target,
        backend=backend,  # type: ignore[arg-type]
        export_dir=cache,
        policy=policy,
    )


def _is_video(path: Path) -> bool:
    from veracity.video.sampling import detect_container

    try:
        with path.open("rb") as f:
            return detect_container(f.read(12)) is not None
    except OSError:
        return False


def _cmd_predict(args: argparse.Namespace) -> int:
    from veracity.answers import VerdictFields

    predictor = _load_predictor(args, args.backend, args.export_dir)
    calibration = predictor.checkpoint.metadata.calibration
    failures = 0
    for path in args.files:
        record: dict[str, object] = {"path": str(path)}
        try:
            if _is_video(path):
                record |= _predict_video(args, predictor, path)
                print(json.dumps(record), flush=True)
                continue
            # One image per forward pass: the numbers are what a lone /infer request gets.
            verdict = predictor.classify(path, robustness_check=args.check_robustness)
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
        print(json.dumps(record), flush=True)
    return 1 if failures else 0


def _video_plan(args: argparse.Namespace) -> tuple[SamplingPlan, VideoLimits]:
    limits = VideoLimits(max_duration_s=args.max_duration, max_samples=max(args.frames or 0, 1024))
    return SamplingPlan(count=args.frames or 32, every_s=args.every), limits


def _predict_video(args: argparse.Namespace, predictor: Predictor, path: Path) -> dict[str, object]:
    from tqdm import tqdm

    from veracity.answers import VideoResponse
    from veracity.video.aggregate import AggregationRule
    from veracity.video.analysis import analyse_video

    plan, limits = _video_plan(args)
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
            rule=AggregationRule(method=args.aggregation),
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


def _cmd_extract_frames(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from veracity.faces import FaceDetector, crop_face
    from veracity.video.sampling import VideoReader

    plan, limits = _video_plan(args)
    detector = FaceDetector()
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    with VideoReader(args.video, limits) as reader:
        planned = len(plan.targets(0.0, reader.info.duration_s, limits))
        with tqdm(total=planned, unit="frame", disable=args.no_progress, file=sys.stderr) as bar:
            for index, frame in enumerate(reader.sample(plan)):
                stem = f"{args.video.stem}_{index:04d}_{frame.timestamp_s:09.3f}s"
                if args.faces:
                    boxes = detector.detect(frame.image)
                    images = [
                        (f"{stem}_face{k}.png", crop_face(frame.image, box, args.face_margin))
                        for k, box in enumerate(boxes)
                    ]
                else:
                    images = [(f"{stem}.png", frame.image)]
                for name, image in images:
                    # PNG: a lossless copy of the decoded pixels, no second lossy encode.
                    image.save(args.out / name, format="PNG", compress_level=1)
                    record = {"file": str(args.out / name), "timestamp_s": frame.timestamp_s}
                    print(json.dumps(record), flush=True)
                    written += 1
                bar.update(1)
    print(
        json.dumps({"video": str(args.video), "images": written, "out": str(args.out)}),
        flush=True,
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from veracity.checkpoint import load_checkpoint
    from veracity.export import ensure_onnx

    checkpoint = load_checkpoint(args.checkpoint)
    path = ensure_onnx(checkpoint, args.out_dir)
    print(json.dumps({"onnx": str(path), "weights_sha256": checkpoint.metadata.weights_sha256}))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from veracity.evaluation.photos import natural_photographs
    from veracity.evaluation.report import build_report, evaluate_items, write_report
    from veracity.models import CLASS_NAMES
    from veracity.training.dataset import scan_split

    predictor = _load_predictor(args)
    samples = [
        (path, CLASS_NAMES[index]) for path, index in scan_split(args.data, args.split, CLASS_NAMES)
    ]
    progress = not args.no_progress
    results = evaluate_items(predictor, samples, progress=progress, desc=f"{args.split} split")
    photos = None
    if args.natural_photos:
        found = [(path, "real") for path in natural_photographs()]
        photos = evaluate_items(predictor, found, progress=progress, desc="natural photographs")
    meta = predictor.checkpoint.metadata
    report = build_report(
        results,
        checkpoint={
            "path": str(args.checkpoint),
            "model_name": meta.model_name,
            "model_version": meta.model_version,
            "weights_sha256": meta.weights_sha256,
            "calibration_version": meta.calibration.version if meta.calibration else None,
            "thresholds": {"real": args.real_threshold, "fake": args.fake_threshold},
            "data": str(args.data),
            "split": args.split,
        },
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


def _load_settings(kind: type[S], command: str, **overrides: Any) -> S | None:
    """Settings from the environment, or None after printing one line per invalid one."""
    from pydantic import ValidationError

    from veracity.settings import describe_validation_error

    try:
        return kind(**overrides)
    except ValidationError as e:
        for line in describe_validation_error(e):
            print(f"veracity {command}: invalid configuration: {line}", file=sys.stderr)
        return None


def _cmd_serve(args: argparse.Namespace) -> int:
    from veracity.settings import Settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = _load_settings(Settings, "serve", **overrides)
    if settings is None:
        return 2
    from veracity.server import serve

    return serve(settings)


def _cmd_db(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from veracity.settings import StoreSettings
    from veracity.store.database import (
        current_revision,
        describe_error,
        describe_url,
        head_revision,
        settings_engine,
        upgrade_database,
    )

    settings = _load_settings(StoreSettings, "db")
    if settings is None:
        return 2
    engine = settings_engine(settings)
    where = describe_url(engine.url)
    database = engine.url.database
    if (
        args.action == "current"
        and engine.url.get_backend_name() == "sqlite"
        and database
        and not Path(database).exists()
    ):
        # Asking must not create an empty database file.
        engine.dispose()
        print(f"{where}: no database yet (schema revision none); `veracity db upgrade`")
        return 0
    try:
        if args.action == "upgrade":
            upgrade_database(engine)
        current = current_revision(engine)
    except SQLAlchemyError as e:
        print(f"veracity db {args.action}: {where}: {describe_error(e)}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    head = head_revision()
    state = "up to date" if current == head else f"behind (latest is {head})"
    print(f"{where}: schema revision {current or 'none'}, {state}")
    return 0 if current == head or args.action == "current" else 1


def _cmd_export_feedback(args: argparse.Namespace) -> int:
    from veracity.settings import StoreSettings
    from veracity.store.database import settings_engine
    from veracity.store.export import export_feedback
    from veracity.store.inputs import InputFiles

    settings = _load_settings(StoreSettings, "export-feedback")
    if settings is None:
        return 2
    engine = settings_engine(settings)
    try:
        inputs = InputFiles(settings.inputs_dir, retention_s=0)
        summary = export_feedback(engine, inputs, args.out)
    finally:
        engine.dispose()
    for key, count in sorted(summary.written.items()):
        print(f"{args.out / key}: {count}")
    if summary.missing_input:
        print(
            f"{summary.missing_input} reviewed input(s) skipped: their bytes were not kept "
            "(VERACITY_STORE_INPUTS) or have expired",
            file=sys.stderr,
        )
    if summary.videos:
        print(f"{summary.videos} reviewed video(s) skipped", file=sys.stderr)
    return 0


def _cmd_receipt_key(args: argparse.Namespace) -> int:
    from veracity.receipts import generate_key

    if args.out.exists():
        print(f"veracity receipt-key: {args.out} exists; choose another path", file=sys.stderr)
        return 2
    private, public = generate_key(args.out)
    print(f"signing key (keep secret): {private}\npublic key: {public}")
    return 0


def _cmd_verify_receipt(args: argparse.Namespace) -> int:

    from veracity.receipts import file_sha256, load_public_keys, verify_receipt

    given: str = args.receipt
    if given == "-":
        given = sys.stdin.read()
    elif given.startswith("@"):
        given = Path(given[1:]).read_text()
    claims = verify_receipt(given, load_public_keys(args.keys))
    print(json.dumps(claims, indent=2, sort_keys=True))
    if args.file is not None:
        actual = file_sha256(args.file)
        if actual != claims.get("input_sha256"):
            print(
                f"veracity verify-receipt: {args.file} is not the file this receipt is about "
                f"(SHA-256 {actual}, the receipt says {claims.get('input_sha256')})",
                file=sys.stderr,
            )
            return 1
        print(f"signature valid; {args.file} is the file it is about", file=sys.stderr)
    else:
        print("signature valid", file=sys.stderr)
    return 0


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    import os
    import urllib.error
    import urllib.request

    # The port of the server in this container; read at run time, never at import.
    port = args.port or int(os.environ.get("VERACITY_PORT", "8001"))
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        healthy = False
    return 0 if healthy else 1


def _cmd_models(args: argparse.Namespace) -> int:
    import os

    from veracity.repository.admin import ModelAdmin, format_listing

    # Read at run time from the shell, never at import: the key is the caller's, not the
    # service's settings.
    key = args.api_key or os.environ.get("VERACITY_ADMIN_KEY")
    admin = ModelAdmin(args.url, key)
    action = args.action
    if action == "list":
        result = admin.list()
        print(json.dumps(result, indent=2) if args.json else format_listing(result))
        return 0
    if action == "load":
        result = admin.load(args.name, args.version)
    elif action == "unload":
        result = admin.unload(args.name, args.version)
    elif action == "promote":
        result = admin.promote(args.name, args.version)
    elif action == "rollback":
        result = admin.rollback(args.name)
    else:
        result = admin.traffic(
            args.name, canary=args.canary, percent=args.percent, shadow=args.shadow
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        canary = result.get("canary") or {}
        print(
            f"{result['name']}: serving {result['serving_version']}, previous "
            f"{result['previous_version'] or '-'}, canary "
            + (f"{canary['version']} {canary['percent']:g}%" if canary else "-")
            + f", shadow {result['shadow_version'] or '-'}"
        )
    return 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from e
    if not values:
        raise argparse.ArgumentTypeError("give at least one value")
    return values


def _quality_list(text: str) -> list[int | None]:
    values: list[int | None] = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part == "png":
            values.append(None)
        elif part.isdigit() and 1 <= int(part) <= 100:
            values.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"{part!r} is neither 'png' nor a quality 1-100")
    if not values:
        raise argparse.ArgumentTypeError("give at least one value")
    return values


def _add_checkpoint(parser: argparse.ArgumentParser) -> None:
    from veracity.demo import default_checkpoint

    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=default_checkpoint(),
        help="default: the bundled demo model (%(default)s)",
    )


def _add_policy(parser: argparse.ArgumentParser) -> None:
    """The verdict's operating points and gates (the service reads them from settings)."""
    parser.add_argument(
        "--real-threshold",
        type=float,
        default=0.25,
        help="fake_prob at or below this is 'real' (default: %(default)s)",
    )
    parser.add_argument(
        "--fake-threshold",
        type=float,
        default=0.75,
        help="fake_prob at or above this is 'fake' (default: %(default)s)",
    )
    parser.add_argument(
        "--min-jpeg-quality",
        type=int,
        default=50,
        help="JPEGs below this estimated quality are inconclusive (default: %(default)s)",
    )
    parser.add_argument(
        "--min-content-std",
        type=float,
        default=3.0,
        help="images with less luma variation are inconclusive (default: %(default)s)",
    )


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    """Which frames of a video: evenly spaced, or one every S seconds."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--count",
        dest="frames",
        type=int,
        default=None,
        help="evenly spaced frames per video (default: 32)",
    )
    group.add_argument(
        "--every", type=float, default=None, metavar="S", help="one frame every S seconds"
    )
    parser.add_argument(
        "--max-duration",
        type=float,
        default=3600.0,
        help="longest video accepted, seconds (default: %(default)s)",
    )


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default="auto",
        help="torch device (default: auto = cuda, then mps, then cpu)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veracity", description="Real-or-manipulated image classification."
    )
    parser.add_argument("--version", action="version", version=f"veracity {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("make-sample-data", help="generate the synthetic real/fake dataset")
    p.add_argument("--out", type=Path, default=DEFAULT_SAMPLE_DIR, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--train-per-class", type=int, default=200, help="default: %(default)s")
    p.add_argument("--val-per-class", type=int, default=100, help="default: %(default)s")
    p.add_argument(
        "--size", type=int, default=256, help="image side in pixels (default: %(default)s)"
    )
    p.add_argument(
        "--sizes",
        type=_int_list,
        default=None,
        metavar="N,N,...",
        help="vary the side within the set: each image draws one of these (overrides --size)",
    )
    p.add_argument(
        "--jpeg-quality",
        type=_quality_list,
        default=None,
        metavar="Q,Q,...",
        help="final encoding, drawn per image: 'png' (lossless, the default) or a JPEG "
        "quality 1-100 (the image is re-encoded and stored as .jpg), e.g. png,90,75",
    )
    p.set_defaults(handler=_cmd_make_sample_data)

    p = sub.add_parser(
        "make-sample-videos",
        help="write synthetic sample videos: real ones, and ones manipulated from 2 s to 4 s",
    )
    p.add_argument("--out", type=Path, default=Path("data/videos"), help="default: %(default)s")
    p.add_argument("--count", type=int, default=1, help="videos of each kind (default: 1)")
    p.add_argument("--seconds", type=float, default=6.0, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.set_defaults(handler=_cmd_make_sample_videos)

    p = sub.add_parser("train", help="train a classifier on an ImageFolder dataset")
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_SAMPLE_DIR,
        help="dataset root with train/{real,fake} and val/{real,fake} (default: %(default)s)",
    )
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
        choices=("top_half", "mean"),
        default="top_half",
        help="how patch logits become the image's: the mean of the more suspicious half "
        "(default) or of all patches",
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
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip fitting calibration and the out-of-distribution gate after training",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_device(p)
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser(
        "calibrate",
        help="refit a checkpoint's calibration and out-of-distribution gate",
        description="Fits the score-to-probability map and the gate's threshold on DATA/val "
        "and the gate's reference statistics on DATA/train, and stores them beside the "
        "weights under a new calibration version (the weights are not changed).",
    )
    _add_checkpoint(p)
    p.add_argument(
        "--data", type=Path, required=True, help="dataset root with train/ and val/ splits"
    )
    p.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    p.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_device(p)
    p.set_defaults(handler=_cmd_calibrate)

    p = sub.add_parser(
        "predict", help="print one JSON line per image: calibrated probabilities and a verdict"
    )
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    _add_checkpoint(p)
    p.add_argument(
        "--backend", choices=("torch", "onnx"), default="torch", help="default: %(default)s"
    )
    p.add_argument(
        "--export-dir", type=Path, default=None, help="ONNX export cache (default: a temp dir)"
    )
    p.add_argument(
        "--check-robustness",
        action="store_true",
        help="also score each image re-encoded as JPEG 75 and halved; report stability",
    )
    _add_sampling(p)
    p.add_argument(
        "--aggregation",
        choices=("confident", "mean", "max", "top_k"),
        default="confident",
        help="how a video's frame probabilities become its own (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar for videos")
    _add_policy(p)
    _add_device(p)
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser(
        "extract-frames",
        help="write a video's sampled frames as PNG files (e.g. to build a training set)",
    )
    p.add_argument("video", type=Path, metavar="VIDEO")
    p.add_argument("--out", type=Path, required=True, help="directory for the frames")
    _add_sampling(p)
    p.add_argument(
        "--faces",
        action="store_true",
        help="write each detected face's crop instead of the frame (a face-crop data set)",
    )
    p.add_argument(
        "--face-margin",
        type=float,
        default=1 / 3,
        help="added on each side, as a fraction of the face box (default: a third)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_extract_frames)

    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (cached under its weights' SHA-256)",
        description="Writes OUT_DIR/<weights-sha256>.onnx and a sidecar JSON; a valid existing "
        "export is reused. Serve it with VERACITY_BACKEND=onnx and VERACITY_EXPORT_DIR=OUT_DIR.",
    )
    _add_checkpoint(p)
    p.add_argument("--out-dir", type=Path, required=True, help="the export cache directory")
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser(
        "evaluate",
        help="verdicts, abstention and calibration of a checkpoint on a dataset split",
        description="Runs every image through the same verdict pipeline as /infer and prints "
        "a JSON summary; with --report DIR also writes DIR/report.json and PNG plots (ROC, "
        "reliability before/after calibration, verdicts by size and by JPEG quality, "
        "confusion matrix with an inconclusive column).",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset root (ImageFolder layout)")
    p.add_argument("--split", default="val", help="default: %(default)s")
    p.add_argument("--report", type=Path, default=None, metavar="DIR", help="write the report")
    p.add_argument(
        "--natural-photos",
        action="store_true",
        help="also judge the natural photographs installed packages ship (all real; never "
        "used for training): scikit-image, scikit-learn, matplotlib",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_checkpoint(p)
    _add_policy(p)
    _add_device(p)
    p.set_defaults(handler=_cmd_evaluate)

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

    p = sub.add_parser(
        "serve",
        help="run the HTTP inference service",
        description="Run the service. Configuration comes from VERACITY_* environment variables "
        "and ./.env (see .env.example); --host/--port override them.",
    )
    p.add_argument("--host", default=None, help="default: VERACITY_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: VERACITY_PORT or 8001")
    p.set_defaults(handler=_cmd_serve)

    p = sub.add_parser(
        "db",
        help="migrate the results database (upgrade) or show its schema revision (current)",
        description="The database is VERACITY_DATABASE_URL, or the SQLite file in "
        "VERACITY_DATA_DIR (default ./var). Replicas may run `upgrade` at once: PostgreSQL "
        "migrations take an advisory lock.",
    )
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(handler=_cmd_db)

    p = sub.add_parser(
        "export-feedback",
        help="write reviewer-labelled kept inputs as a train/val ImageFolder tree",
        description="Reads the results store (VERACITY_DATABASE_URL or VERACITY_DATA_DIR) and "
        "its kept inputs; each reviewed image goes under its latest label into train/ or "
        "val/ (fixed by its SHA-256). `veracity train --data OUT` trains on it.",
    )
    p.add_argument("--out", type=Path, required=True, help="a new or empty directory")
    p.set_defaults(handler=_cmd_export_feedback)

    p = sub.add_parser(
        "receipt-key",
        help="generate an Ed25519 key pair for signing verdict receipts",
        description="Writes the private key (PEM, mode 0600) to --out and the public key "
        "beside it (.pub.pem). Point VERACITY_RECEIPT_SIGNING_KEY at the private key.",
    )
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(handler=_cmd_receipt_key)

    p = sub.add_parser(
        "verify-receipt",
        help="check a verdict receipt's signature (and, given the file, its hash) offline",
        description="Exit 0: the receipt was signed by one of the keys (and is about --file). "
        "Exit 1: the file differs. Exit 2: the receipt does not verify.",
    )
    p.add_argument("receipt", help="the receipt (compact JWS), @FILE holding it, or - for stdin")
    p.add_argument(
        "--keys",
        type=Path,
        required=True,
        help="the service's JWKS (saved from /.well-known/jwks.json) or a public key PEM",
    )
    p.add_argument("--file", type=Path, default=None, help="the image or video it is about")
    p.set_defaults(handler=_cmd_verify_receipt)

    p = sub.add_parser(
        "models",
        help="list and manage a running service's models (load, unload, promote, rollback, "
        "traffic); an admin key for changes",
    )
    p.add_argument(
        "--url", default="http://127.0.0.1:8001", help="the service (default: %(default)s)"
    )
    p.add_argument(
        "--api-key", default=None, help="default: the VERACITY_ADMIN_KEY environment variable"
    )
    p.add_argument("--json", action="store_true", help="print the service's answer as JSON")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every model, its versions, state, roles and memory")
    for name, text in (
        ("load", "load and warm up a version without sending it traffic"),
        ("unload", "unload a version that takes no traffic"),
        ("promote", "serve a version (loaded and warmed up first)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("name")
        action.add_argument("version")
    action = actions.add_parser("rollback", help="serve the previous version again")
    action.add_argument("name")
    action = actions.add_parser(
        "traffic", help="a canary share and/or a shadow (leave both out to clear them)"
    )
    action.add_argument("name")
    action.add_argument("--canary", default=None, metavar="VERSION")
    action.add_argument("--percent", type=float, default=0.0, help="the canary's share, 0-100")
    action.add_argument("--shadow", default=None, metavar="VERSION")
    p.set_defaults(handler=_cmd_models)

    p = sub.add_parser(
        "healthcheck",
        help="exit 0 if the local service's /health answers 200 (container HEALTHCHECK)",
    )
    p.add_argument("--port", type=int, default=None, help="default: VERACITY_PORT or 8001")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds (default: %(default)s)")
    p.set_defaults(handler=_cmd_healthcheck)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from veracity.images import install_warning_policy

    install_warning_policy()
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except VeracityError as e:
        print(f"veracity {args.command}: error: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
