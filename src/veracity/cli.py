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
from typing import TYPE_CHECKING

from veracity import __version__
from veracity.errors import VeracityError

if TYPE_CHECKING:
    from veracity.inference.predictor import Predictor

DEFAULT_CHECKPOINT = Path("checkpoints/demo.safetensors")
DEFAULT_SAMPLE_DIR = Path("data/sample")


def _cmd_make_sample_data(args: argparse.Namespace) -> int:
    from veracity.sampledata import SampleDataSpec, generate_sample_data

    spec = SampleDataSpec(
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        image_size=args.size,
    )
    count = generate_sample_data(args.out, seed=args.seed, spec=spec)
    print(json.dumps({"out": str(args.out), "seed": args.seed, "images": count}))
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
    )
    result = train(config, progress=not args.no_progress)
    print(
        json.dumps(
            {
                "best": str(result.best_checkpoint),
                "last": str(result.last_checkpoint),
                "history": result.history,
            }
        )
    )
    return 0


def _load_predictor(
    checkpoint: Path, device: str, backend: str = "torch", export_dir: Path | None = None
) -> Predictor:
    from veracity.checkpoint import load_checkpoint
    from veracity.devices import select_device
    from veracity.export import default_export_dir
    from veracity.inference.predictor import create_predictor

    target = select_device(device)  # type: ignore[arg-type]
    loaded = load_checkpoint(checkpoint, device=target)
    cache = export_dir or default_export_dir()
    return create_predictor(loaded, target, backend=backend, export_dir=cache)  # type: ignore[arg-type]


def _cmd_predict(args: argparse.Namespace) -> int:
    predictor = _load_predictor(args.checkpoint, args.device, args.backend, args.export_dir)
    failures = 0
    for path in args.files:
        record: dict[str, object] = {"path": str(path)}
        try:
            # One image per forward pass: the numbers are what a lone /infer request gets.
            prediction = predictor.predict([predictor.preprocess(path)])[0]
        except FileNotFoundError:
            record["error"] = "file not found"
            failures += 1
        except VeracityError as e:
            record["error"] = e.message
            failures += 1
        else:
            record |= {
                "fake_prob": prediction.fake_prob,
                "real_prob": prediction.real_prob,
                "label": prediction.label,
            }
        print(json.dumps(record), flush=True)
    return 1 if failures else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from veracity.checkpoint import load_checkpoint
    from veracity.export import ensure_onnx

    checkpoint = load_checkpoint(args.checkpoint)
    path = ensure_onnx(checkpoint, args.out_dir)
    print(json.dumps({"onnx": str(path), "weights_sha256": checkpoint.metadata.weights_sha256}))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from veracity.models import CLASS_NAMES
    from veracity.training.dataset import create_eval_dataset, scan_split
    from veracity.training.trainer import evaluate

    predictor = _load_predictor(args.checkpoint, args.device)
    samples = scan_split(args.data, args.split, CLASS_NAMES)
    dataset = create_eval_dataset(samples, predictor.checkpoint.preprocess)
    metrics = evaluate(predictor.model, DataLoader(dataset, batch_size=32), predictor.device)
    print(json.dumps({"images": len(dataset)} | metrics.as_dict()))
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


def _cmd_serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from veracity.settings import Settings, describe_validation_error

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        for line in describe_validation_error(e):
            print(f"veracity serve: invalid configuration: {line}", file=sys.stderr)
        return 2
    from veracity.server import serve

    return serve(settings)


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


def _add_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="default: %(default)s"
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
    p.set_defaults(handler=_cmd_make_sample_data)

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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_device(p)
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("predict", help="print one JSON line of probabilities per image file")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    _add_checkpoint(p)
    p.add_argument(
        "--backend", choices=("torch", "onnx"), default="torch", help="default: %(default)s"
    )
    p.add_argument(
        "--export-dir", type=Path, default=None, help="ONNX export cache (default: a temp dir)"
    )
    _add_device(p)
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (cached under its weights' SHA-256)",
        description="Writes OUT_DIR/<weights-sha256>.onnx and a sidecar JSON; a valid existing "
        "export is reused. Serve it with VERACITY_BACKEND=onnx and VERACITY_EXPORT_DIR=OUT_DIR.",
    )
    _add_checkpoint(p)
    p.add_argument("--out-dir", type=Path, required=True, help="the export cache directory")
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("evaluate", help="accuracy and ROC-AUC of a checkpoint on a dataset split")
    p.add_argument("--data", type=Path, required=True, help="dataset root (ImageFolder layout)")
    p.add_argument("--split", default="val", help="default: %(default)s")
    _add_checkpoint(p)
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
