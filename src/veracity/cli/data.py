"""``make-sample-data`` and ``make-sample-videos``: synthetic data to train and try on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.cli.arguments import DEFAULT_SAMPLE_DIR
from veracity.errors import ConfigurationError

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
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
