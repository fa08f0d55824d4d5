"""``veracity quantize``: a checkpoint's ONNX graph quantised to INT8 and checked against FP32.

Static quantisation with ONNX Runtime's own tooling (``quantize_static``; the graph first
through its ``quant_pre_process``): QDQ format, weights per output channel as signed
8-bit, activations unsigned 8-bit with ranges calibrated (MinMax) on images of the training
data, prepared exactly as the service prepares uploads (decode, patches, normalisation).
The first convolution, the classifier and the features the gate reads stay in FP32
(``_kept_in_fp32``). ``reduce_range`` keeps weights to 7 bits: on x86 CPUs without VNNI
(AVX2 only, as here) ONNX Runtime's u8s8 kernels add pairs of products in 16 bits, which
full-range weights can overflow.

The check runs the FP32 and the INT8 graph on the same prepared images of data the
quantiser never saw (the validation split, labelled), through the same Predictor, and
records verdict agreement, the largest and mean change of ``fake_prob`` and the expected
calibration error of each; veracity.inference.precision decides from the record whether
the graph may serve.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from veracity.checkpoint import file_sha256, load_checkpoint
from veracity.errors import DatasetError, InvalidImageError
from veracity.export import ensure_onnx
from veracity.inference.backends import Backend, OnnxBackend
from veracity.inference.engines import median_seconds
from veracity.inference.precision import (
    MAX_ECE_INCREASE,
    MIN_AGREEMENT,
    Acceptance,
    Int8Record,
    int8_paths,
    write_record,
)
from veracity.inference.predictor import Predictor, PreparedImage, create_predictor
from veracity.verdicts.calibration import expected_calibration_error

logger = logging.getLogger("veracity.quantize")

# Patches per calibration batch; images whose patches calibrate the ranges, and patches
# taken from each (spread over its grid). ONNX Runtime keeps every intermediate tensor of
# every calibration batch until it computes the ranges (its option to merge them as it
# goes drops them instead in 1.31), about 25 MB a 256 px patch for EfficientNet-Lite0: 64
# images of 16 patches were killed at 24 GB. 32 x 4 patches hold about 3 GB.
_CALIBRATION_BATCH = 16
_CHECK_CHUNK = 8  # images judged per forward pass in the check
DEFAULT_CALIBRATION_IMAGES = 32
PATCHES_PER_IMAGE = 4

METHOD: dict[str, str | bool] = {
    "format": "QDQ",
    "fp32": "the first convolution, the classifier and its pooling, the gate's features",
    "weights": "int8, per channel",
    "activations": "uint8, per tensor",
    "calibration": "MinMax",
    "reduce_range": True,
}


class _Patches:
    """ONNX Runtime's CalibrationDataReader: the patches of the first ``limit`` uploads
    that decode, prepared as the service prepares them, ``_CALIBRATION_BATCH`` at a time."""

    def __init__(
        self, predictor: Predictor, uploads: Iterable[bytes], limit: int, input_name: str
    ) -> None:
        self.images = 0
        self._input = input_name
        self._batches = self._read(predictor, uploads, limit)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}

    def _read(
        self, predictor: Predictor, uploads: Iterable[bytes], limit: int
    ) -> Iterator[np.ndarray]:
        pending = torch.empty(0, *predictor.config.input_size)
        for upload in uploads:
            if self.images >= limit:
                break
            try:
                prepared = predictor.prepare(upload, robustness_check=False)
            except InvalidImageError:
                continue
            if not prepared.inputs:  # a face checkpoint's upload without a face
                continue
            self.images += 1
            patches = torch.cat(prepared.inputs)
            count = min(PATCHES_PER_IMAGE, len(patches))
            spread = sorted(
                {round(i * (len(patches) - 1) / max(1, count - 1)) for i in range(count)}
            )
            pending = torch.cat([pending, patches[spread]])
            while len(pending) >= _CALIBRATION_BATCH:
                yield pending[:_CALIBRATION_BATCH].numpy()
                pending = pending[_CALIBRATION_BATCH:]
        if len(pending):
            yield pending.numpy()


def _kept_in_fp32(graph: Path) -> list[str]:
    """The first convolution (it reads the raw pixels, whose fine detail is the forensic
    signal) and the classifier (its output is the score itself): the layers quantisation
    hurts most, as is usual practice; they cost a few percent of the compute.

    And the features: every node only the gate's ``features`` output needs (the pixel
    statistics, each stage's spatial mean, their concatenation) and the pooling the
    classifier reads. Quantised, the concatenation put every feature group on one 8-bit
    grid spanning all of them, and the pixel statistics' noise residual on another: the
    features moved by 10-20% (the gate's distances with them), for reductions that cost
    next to nothing in FP32.
    """
    import onnx

    from veracity.export import OUTPUTS

    nodes = onnx.load(str(graph), load_external_data=False).graph.node
    producers = {output: node for node in nodes for output in node.output}
    logits, features = OUTPUTS
    kept = _ancestors(producers, features) - _ancestors(producers, logits)
    first_conv = next((n.name for n in nodes if n.op_type == "Conv"), None)
    kept |= {first_conv} if first_conv else set()
    for node in nodes:
        if node.op_type in ("Gemm", "MatMul"):
            kept.add(node.name)
            source = producers.get(node.input[0])
            while source is not None and source.op_type in ("Reshape", "Flatten", "Squeeze"):
                source = producers.get(source.input[0])
            if source is not None and source.op_type in ("ReduceMean", "GlobalAveragePool"):
                kept.add(source.name)
    return [n.name for n in nodes if n.name in kept]


def _ancestors(producers: dict[str, Any], output: str) -> set[str]:
    """The names of the nodes ``output`` is computed from."""
    found: set[str] = set()
    pending = [output]
    while pending:
        node = producers.get(pending.pop())
        if node is not None and node.name not in found:
            found.add(node.name)
            pending.extend(node.input)
    return found


def _quantize(fp32: Path, out: Path, reader: _Patches) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="veracity-quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        quantized = Path(work) / "int8.onnx"
        # Shapes inferred and the graph optimised first, as ONNX Runtime recommends;
        # symbolic shape inference is skipped (the batch axis is the only dynamic one).
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,
            nodes_to_exclude=_kept_in_fp32(prepared),
        )
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.copyfile(quantized, tmp)
        tmp.replace(out)


def compare(
    fp32: Predictor,
    int8: Backend,
    labelled: Iterable[tuple[bytes, int]],
    *,
    data: str,
    min_agreement: float = MIN_AGREEMENT,
    max_ece_increase: float = MAX_ECE_INCREASE,
) -> Acceptance:
    """INT8 against FP32 on the same prepared images (label 1: fake), a few at a time (a
    forward pass over all of them at once would hold every patch's activations).

    Raises:
        DatasetError: no labelled image could be judged.
    """
    reference = fp32.backend
    p32: list[float] = []
    p8: list[float] = []
    labels: list[int] = []
    agreeing = 0
    chunk: list[tuple[PreparedImage, int]] = []

    def judge() -> None:
        nonlocal agreeing
        prepared = [p for p, _ in chunk]
        before = fp32.predict_prepared(prepared)
        fp32.backend = int8
        try:
            after = fp32.predict_prepared(prepared)
        finally:
            fp32.backend = reference
        for (a, verdict_a), (b, verdict_b), (_, label) in zip(before, after, chunk, strict=True):
            p32.append(a.fake_prob)
            p8.append(b.fake_prob)
            labels.append(label)
            agreeing += verdict_a.verdict == verdict_b.verdict
        chunk.clear()

    for upload, label in labelled:
        try:
            chunk.append((fp32.prepare(upload, robustness_check=False), label))
        except InvalidImageError:
            continue
        if len(chunk) == _CHECK_CHUNK:
            judge()
    if chunk:
        judge()
    if not labels:
        raise DatasetError(f"no image of {data} could be judged to check INT8 against FP32")
    before_p, after_p = np.asarray(p32), np.asarray(p8)
    truth = np.asarray(labels, dtype=np.float64)
    change = np.abs(after_p - before_p)
    return Acceptance(
        images=len(labels),
        data=data,
        agreement=round(agreeing / len(labels), 4),
        max_fake_prob_change=round(float(change.max()), 4),
        mean_fake_prob_change=round(float(change.mean()), 5),
        ece_fp32=round(expected_calibration_error(before_p, truth), 4),
        ece_int8=round(expected_calibration_error(after_p, truth), 4),
        min_agreement=min_agreement,
        max_ece_increase=max_ece_increase,
    )


def quantize_checkpoint(
    checkpoint: Path,
    *,
    calibration: Iterable[bytes],
    acceptance: Iterable[tuple[bytes, int]],
    export_dir: Path,
    calibration_data: str,
    acceptance_data: str,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    min_agreement: float = MIN_AGREEMENT,
    max_ece_increase: float = MAX_ECE_INCREASE,
) -> Int8Record:
    """Quantise ``checkpoint``'s graph on ``calibration`` uploads, check it on the labelled
    ``acceptance`` uploads, and cache graph and record in ``export_dir`` by weights digest.
    The record is written whether the check passes or not: a replica reads the figures.

    Raises:
        CheckpointError: the checkpoint cannot be loaded or exported.
        DatasetError: no calibration or acceptance image could be read.
    """
    from onnxruntime import __version__ as ort_version

    device = torch.device("cpu")
    loaded = load_checkpoint(checkpoint, device=device)
    fp32_graph = ensure_onnx(loaded, export_dir)
    predictor = create_predictor(loaded, device, backend="onnx", export_dir=export_dir)
    graph, record_path = int8_paths(export_dir, loaded.metadata.weights_sha256)
    # Built and checked under another name: a run that fails or is killed leaves the graph
    # and record that replicas serve (a passed one among them) as they were.
    candidate = graph.with_name(f".{graph.name}.candidate")
    reader = _Patches(predictor, calibration, calibration_images, input_name="images")
    try:
        _quantize(fp32_graph, candidate, reader)
    except ValueError as e:  # ONNX Runtime: "No data is collected."
        if reader.images == 0:
            raise DatasetError(
                f"no image of {calibration_data} could be read to calibrate INT8"
            ) from e
        raise
    int8 = OnnxBackend(candidate, device, threads=None, name="onnx-int8")
    checked = compare(
        predictor,
        int8,
        acceptance,
        data=acceptance_data,
        min_agreement=min_agreement,
        max_ece_increase=max_ece_increase,
    )
    batch = torch.rand(_CALIBRATION_BATCH, *loaded.preprocess.input_size)
    calibrated = loaded.metadata.calibration
    record = Int8Record(
        weights_sha256=loaded.metadata.weights_sha256,
        calibration_version=calibrated.version if calibrated is not None else None,
        fp32_onnx_sha256=file_sha256(fp32_graph),
        int8_onnx_sha256=file_sha256(candidate),
        built_at=datetime.now(UTC),
        calibration_data=calibration_data,
        calibration_images=reader.images,
        method=METHOD,
        acceptance=checked,
        fp32_seconds_per_batch=round(median_seconds(predictor.backend, batch), 4),
        int8_seconds_per_batch=round(median_seconds(int8, batch), 4),
        onnxruntime_version=ort_version,
    )
    # The graph first: until the record names its hash, a replica refuses the pair (and
    # serves FP32) rather than mixing a new graph with an old verdict.
    candidate.replace(graph)
    write_record(record_path, record)
    log = logger.info if checked.passed else logger.warning
    log(
        "INT8 graph checked against FP32: " + ("passed" if checked.passed else "refused"),
        extra={"graph": str(graph), **checked.model_dump(), "failures": checked.failures},
    )
    return record
