"""Which engine runs a checkpoint's forward pass: ONNX Runtime or PyTorch eager (``auto``
checks they agree, then takes the faster), in FP32 or the checked INT8 graph."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from veracity.checkpoint import Checkpoint
from veracity.errors import ConfigurationError
from veracity.inference.backends import PARITY_TOLERANCE, Backend, OnnxBackend
from veracity.inference.precision import Int8Lookup, find_int8, log_refusal
from veracity.runtime import Precision

logger = logging.getLogger("veracity.predictor")


def with_precision(
    fp32: Backend,
    checkpoint: Checkpoint,
    precision: Precision,
    *,
    export_dir: Path | None,
    threads: int | None,
    clock: Callable[[Backend, torch.Tensor], float] | None = None,
) -> Backend:
    """The INT8 engine where it may serve (see veracity.inference.precision), else FP32's."""
    from veracity.export import export_path

    if fp32.name != "onnx" or fp32.device.type != "cpu" or export_dir is None:
        log_refusal(
            Int8Lookup(
                None,
                None,
                f"INT8 runs on ONNX Runtime's CPU provider; the engine "
                f"here is {fp32.name} on {fp32.device.type}",
            ),
            asked=precision == "int8",
        )
        return fp32
    lookup = find_int8(checkpoint, export_dir, export_path(export_dir, checkpoint))
    if lookup.graph is None or lookup.record is None:
        log_refusal(lookup, asked=precision == "int8")
        return fp32
    try:
        int8 = OnnxBackend(lookup.graph, fp32.device, threads=threads, name="onnx-int8")
    except Exception as e:  # e.g. a graph from a newer ONNX Runtime: FP32 still serves
        log_refusal(Int8Lookup(None, lookup.record, f"the INT8 graph does not load: {e}"))
        return fp32
    int8.fingerprint = lookup.record.int8_onnx_sha256
    figures = lookup.record.acceptance.model_dump()
    if precision == "int8":
        logger.info("precision int8: serving the checked INT8 graph", extra=figures)
        return int8
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(8, *checkpoint.preprocess.input_size, generator=generator)
    timer = clock or median_seconds
    timings = {"fp32": timer(fp32, batch), "int8": timer(int8, batch)}
    chosen = int8 if timings["int8"] < timings["fp32"] else fp32
    logger.info(
        "precision auto: the faster of the checked INT8 graph and FP32",
        extra={"backend": chosen.name, "seconds": timings, **figures},
    )
    return chosen


def choose_engine(
    onnx: Backend,
    eager: Backend,
    input_size: tuple[int, int, int],
    clock: Callable[[Backend, torch.Tensor], float] | None = None,
) -> Backend:
    """``auto``'s choice between ONNX Runtime and PyTorch eager for one checkpoint.

    ONNX Runtime must first agree with PyTorch (the reference) on a fixed batch. On CPU it
    is then taken (measured faster there: 0.63 s against 0.9-1.0 s for 512 patches); on a
    GPU both are timed on a batch and the faster is taken, since which one wins depends on
    the GPU, the model and the CUDA build.
    """
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(8, *input_size, generator=generator)
    difference = float((onnx(batch[:2])[0] - eager(batch[:2])[0]).abs().max())
    if difference > PARITY_TOLERANCE:
        logger.warning(
            "backend auto: PyTorch eager, ONNX Runtime's logits differ from it",
            extra={"max_abs_difference": difference, "tolerance": PARITY_TOLERANCE},
        )
        return eager
    if onnx.device.type == "cpu":
        return onnx
    timer = clock or median_seconds
    timings = {"onnx": timer(onnx, batch), "torch": timer(eager, batch)}
    chosen = onnx if timings["onnx"] <= timings["torch"] else eager
    logger.info(
        "backend auto: the faster engine on this device",
        extra={"backend": chosen.name, "seconds": timings},
    )
    return chosen


def median_seconds(engine: Backend, batch: torch.Tensor, runs: int = 5) -> float:
    for _ in range(2):  # warm-up: allocation and kernel choice
        engine(batch)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        engine(batch)  # returns CPU tensors: the device work is finished
        times.append(time.perf_counter() - started)
    return sorted(times)[runs // 2]


def onnx_engine(
    checkpoint: Checkpoint, device: torch.device, export_dir: Path | None, threads: int | None
) -> Backend:
    from veracity.export import ensure_onnx

    if export_dir is None:
        raise ConfigurationError("the onnx backend needs an export directory")
    return OnnxBackend(ensure_onnx(checkpoint, export_dir), device, threads=threads)
