"""Where the bundled demo checkpoint lives, whatever the working directory.

The demo model sits in the source checkout's ``checkpoints/`` folder (the package is
installed from it in editable mode by ``make install``). Resolving it from this file rather
than from the working directory makes ``veracity predict`` and ``veracity serve`` find it
from anywhere. A wheel installed elsewhere has no checkout: set ``VERACITY_CHECKPOINT`` (the
container image does) or pass ``--checkpoint``.
"""

from __future__ import annotations

from pathlib import Path


def default_checkpoint() -> Path:
    return Path(__file__).resolve().parents[2] / "checkpoints" / "demo.safetensors"
