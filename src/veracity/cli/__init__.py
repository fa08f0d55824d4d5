"""The ``veracity`` command: one entry point for data, training, prediction and serving.

Heavy modules (torch, timm) are imported inside each command, so ``veracity --help`` is
instant and a typo in a flag is reported before a framework loads.
"""

from veracity.cli.command import build_parser, main

__all__ = ["build_parser", "main"]
