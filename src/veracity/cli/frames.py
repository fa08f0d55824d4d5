"""``extract-frames``: a video's sampled frames (or the faces in them) as PNG files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.cli.arguments import add_sampling, video_plan

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "extract-frames",
        help="write a video's sampled frames as PNG files (e.g. to build a training set)",
    )
    p.add_argument("video", type=Path, metavar="VIDEO")
    p.add_argument("--out", type=Path, required=True, help="directory for the frames")
    add_sampling(p)
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


def _cmd_extract_frames(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from veracity.faces import FaceDetector, crop_face
    from veracity.video.sampling import VideoReader

    plan, limits = video_plan(args)
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
