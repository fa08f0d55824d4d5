"""The flags several commands share, and what the commands build from them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.video.plan import SamplingPlan, VideoLimits

if TYPE_CHECKING:
    from typing import TypeAlias

    from veracity.inference.predictor import Predictor

    # What each command group's add_parser receives: the top-level parser's subcommands.
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

DEFAULT_SAMPLE_DIR = Path("data/sample")


def add_checkpoint(parser: argparse.ArgumentParser) -> None:
    from veracity.demo import default_checkpoint

    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=default_checkpoint(),
        help="default: the bundled demo model (%(default)s)",
    )


def add_policy(parser: argparse.ArgumentParser) -> None:
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


def add_sampling(parser: argparse.ArgumentParser) -> None:
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


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default="auto",
        help="torch device (default: auto = cuda, then mps, then cpu)",
    )


def video_plan(args: argparse.Namespace) -> tuple[SamplingPlan, VideoLimits]:
    """The frames add_sampling's flags ask for, and the limits they must fit."""
    limits = VideoLimits(max_duration_s=args.max_duration, max_samples=max(args.frames or 0, 1024))
    return SamplingPlan(count=args.frames or 32, every_s=args.every), limits


def load_predictor(
    args: argparse.Namespace,
    backend: str = "torch",
    export_dir: Path | None = None,
    precision: str = "fp32",
) -> Predictor:
    """The predictor add_checkpoint's, add_policy's and add_device's flags describe."""
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
        precision=precision,  # type: ignore[arg-type]
    )
