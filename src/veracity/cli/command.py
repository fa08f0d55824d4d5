"""The parser, built from each command group, and the dispatch to the chosen command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from veracity import __version__
from veracity.cli import (
    checkpoints,
    corpus,
    data,
    drift,
    faces,
    frames,
    healthcheck,
    local,
    models,
    predict,
    pretrained,
    quantize,
    receipts,
    scan,
    serve,
    store,
    training,
)
from veracity.errors import VeracityError

# In the order `veracity --help` lists their commands.
GROUPS = (
    data,
    corpus,
    pretrained,
    faces,
    training,
    quantize,
    predict,
    scan,
    frames,
    checkpoints,
    serve,
    local,
    store,
    drift,
    receipts,
    models,
    healthcheck,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veracity", description="Real-or-manipulated image classification."
    )
    parser.add_argument("--version", action="version", version=f"veracity {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parser(sub)
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
