"""INT8: the quantised ONNX graph a checkpoint may be served with, and the record of the
check it passed (or failed) against FP32, both cached beside the FP32 export under the
weights' SHA-256.

``veracity quantize`` (veracity.quantization) builds the graph and runs the check offline,
where the training corpus is; a replica only reads what it left. A replica serves the
INT8 graph only when the record names these weights and this FP32 export, the graph's
bytes hash to what the record says, and the record says the check passed; otherwise it
says why in the log, with the figures, and serves FP32. A corrupt or mismatched graph is
never served.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from veracity.checkpoint import Checkpoint, atomic_write, file_sha256

logger = logging.getLogger("veracity.precision")

# What the check asks of INT8 against FP32, on labelled data the quantiser never saw.
MIN_AGREEMENT = 0.99  # verdicts (real / fake / inconclusive) the same
MAX_ECE_INCREASE = 0.02  # expected calibration error may grow by at most this


class Acceptance(BaseModel):
    """INT8 against FP32 on the same prepared images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: Annotated[int, Field(ge=1)]
    data: str
    agreement: float = Field(description="Share of images with the same verdict.")
    max_fake_prob_change: float
    mean_fake_prob_change: float
    ece_fp32: float
    ece_int8: float
    min_agreement: float = MIN_AGREEMENT
    max_ece_increase: float = MAX_ECE_INCREASE

    @property
    def failures(self) -> list[str]:
        """What fails, against the stricter of the record's bounds and this service's (a
        record built with looser bounds, or by an older release, is not taken at its word)."""
        found = []
        least = max(self.min_agreement, MIN_AGREEMENT)
        most = min(self.max_ece_increase, MAX_ECE_INCREASE)
        if self.agreement < least:
            found.append(f"verdict agreement {self.agreement:.4f} < {least}")
        if self.ece_int8 > self.ece_fp32 + most:
            found.append(
                f"calibration error {self.ece_int8:.4f} > FP32's {self.ece_fp32:.4f} + {most}"
            )
        return found

    @property
    def passed(self) -> bool:
        return not self.failures


class Int8Record(BaseModel):
    """``<weights sha256>.int8.json``: what was quantised, how, and how it compared."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights_sha256: str
    # The check's figures hold for this calibration: `veracity calibrate` changes every
    # fake_prob without touching the weights.
    calibration_version: int | None
    fp32_onnx_sha256: str
    int8_onnx_sha256: str
    built_at: datetime
    calibration_data: str
    calibration_images: int
    method: dict[str, str | bool]
    acceptance: Acceptance
    # Measured when built: one batch through each graph on the build machine (median).
    fp32_seconds_per_batch: float
    int8_seconds_per_batch: float
    onnxruntime_version: str


def int8_paths(export_dir: Path, weights_sha256: str) -> tuple[Path, Path]:
    """The quantised graph and its record."""
    return (
        export_dir / f"{weights_sha256}.int8.onnx",
        export_dir / f"{weights_sha256}.int8.json",
    )


def write_record(path: Path, record: Int8Record) -> None:
    text = record.model_dump_json(indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@dataclass(frozen=True)
class Int8Lookup:
    """What the export cache holds for a checkpoint: the graph to serve (None: refused),
    its record when one could be read, and why it is refused."""

    graph: Path | None
    record: Int8Record | None
    reason: str = ""


def find_int8(checkpoint: Checkpoint, export_dir: Path, fp32_graph: Path) -> Int8Lookup:
    """The INT8 graph to serve for ``checkpoint``, or why there is none."""
    weights = checkpoint.metadata.weights_sha256
    graph, record_path = int8_paths(export_dir, weights)
    if not record_path.is_file():
        return Int8Lookup(
            None,
            None,
            f"no INT8 graph for these weights in {export_dir}; build and check one with "
            "`veracity quantize`",
        )
    try:
        record = Int8Record.model_validate(json.loads(record_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as e:
        reason = f"the INT8 record {record_path} is unreadable ({str(e)[:200]}); rebuild it"
        return Int8Lookup(None, None, reason)
    if record.weights_sha256 != weights:
        return Int8Lookup(None, record, f"the INT8 record {record_path} is for other weights")
    calibration = checkpoint.metadata.calibration
    if record.calibration_version != (calibration.version if calibration else None):
        reason = "the INT8 graph was checked under another calibration; rebuild it"
        return Int8Lookup(None, record, reason)
    try:
        graph_digest, fp32_digest = file_sha256(graph), file_sha256(fp32_graph)
    except OSError:
        graph_digest = fp32_digest = ""
    if graph_digest != record.int8_onnx_sha256:
        reason = f"the INT8 graph {graph} is missing or does not match its record; rebuild it"
        return Int8Lookup(None, record, reason)
    if fp32_digest != record.fp32_onnx_sha256:
        reason = "the INT8 graph was quantised from another FP32 export; rebuild it"
        return Int8Lookup(None, record, reason)
    if not record.acceptance.passed:
        reason = "it failed its check against FP32: " + "; ".join(record.acceptance.failures)
        return Int8Lookup(None, record, reason)
    return Int8Lookup(graph, record)


def log_refusal(lookup: Int8Lookup, *, asked: bool = True) -> None:
    """Log why FP32 serves: a warning where INT8 was asked for or a graph was refused, a
    note where ``auto`` merely found none built."""
    figures = {} if lookup.record is None else lookup.record.acceptance.model_dump()
    level = logging.WARNING if asked or lookup.record is not None else logging.INFO
    logger.log(level, "INT8 not served, serving FP32", extra={"reason": lookup.reason, **figures})
