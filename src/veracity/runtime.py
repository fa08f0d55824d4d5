"""What a deployment names to run the model: the device, the backend, the export cache.

Only names and defaults, no framework: the settings validate these choices without loading
torch or ONNX Runtime (``veracity db upgrade`` must not), and ``devices``,
``inference.backends`` and ``export`` act on them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

DevicePreference = Literal["auto", "cpu", "cuda", "mps"]
BackendName = Literal["torch", "onnx"]
# What a deployment may ask for: a backend, or "auto" (the fastest one that passes the
# parity check on the device; see predictor.create_predictor).
BackendChoice = Literal["auto", "torch", "onnx"]
# The arithmetic the ONNX graph runs in: FP32, the INT8 graph `veracity quantize` built and
# checked, or "auto" (INT8 where its check passed and it measures faster here).
Precision = Literal["fp32", "int8", "auto"]


def default_export_dir() -> Path:
    """Where exports are cached unless configured: the system temporary directory."""
    return Path(tempfile.gettempdir()) / "veracity-exports"
