"""Exporting a checkpoint to ONNX, cached under the weights' SHA-256.

The exported file is named after the checkpoint's full weights hash and carries a sidecar
JSON with that hash and the ONNX file's own SHA-256. A changed checkpoint therefore has a
different file name (it can never pick up a stale export), and an export that was altered
or half-written fails its own hash check and is rebuilt.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from veracity import __version__
from veracity.checkpoint import Checkpoint, atomic_write, file_sha256
from veracity.errors import CheckpointError

logger = logging.getLogger("veracity.export")

OPSET = 18
# The outputs an export carries; an export cached before features were added is rebuilt.
OUTPUTS = ["logits", "features"]


def export_path(export_dir: Path, checkpoint: Checkpoint) -> Path:
    return export_dir / f"{checkpoint.metadata.weights_sha256}.onnx"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _is_valid(path: Path, weights_sha256: str) -> bool:
    try:
        record = json.loads(_sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("weights_sha256") == weights_sha256
        and record.get("outputs") == OUTPUTS
        and path.is_file()
        and record.get("onnx_sha256") == file_sha256(path)
    )


def export_onnx(checkpoint: Checkpoint, out: Path) -> Path:
    """Export ``checkpoint``'s model to ``out`` (dynamic batch size), atomically."""
    from veracity.models import ScoringModel

    model = ScoringModel(checkpoint.model.to("cpu").eval()).eval()
    channels, height, width = checkpoint.metadata.preprocess.input_size
    example = torch.zeros(2, channels, height, width)
    batch = torch.export.Dim("batch", min=1, max=1024)
    atomic_write(
        out,
        lambda tmp: torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=True,
            opset_version=OPSET,
            input_names=["images"],
            output_names=OUTPUTS,
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        ),
    )
    record = {
        "weights_sha256": checkpoint.metadata.weights_sha256,
        "onnx_sha256": file_sha256(out),
        "opset": OPSET,
        "outputs": OUTPUTS,
        "architecture": checkpoint.metadata.architecture,
        "torch_version": torch.__version__,
        "veracity_version": __version__,
    }
    _sidecar(out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out


def ensure_onnx(checkpoint: Checkpoint, export_dir: Path) -> Path:
    """The cached export for ``checkpoint``, exporting it first if missing or invalid.

    Raises:
        CheckpointError: the model cannot be exported (e.g. an operator ONNX lacks).
    """
    path = export_path(export_dir, checkpoint)
    if _is_valid(path, checkpoint.metadata.weights_sha256):
        return path
    logger.info("exporting to ONNX", extra={"path": str(path)})
    try:
        return export_onnx(checkpoint, path)
    except (RuntimeError, ValueError, TypeError, OSError) as e:
        raise CheckpointError(
            f"cannot export {checkpoint.metadata.architecture!r} to ONNX: {e}; "
            "use VERACITY_BACKEND=torch"
        ) from e
