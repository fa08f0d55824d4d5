"""VERACITY_BACKEND=auto: ONNX Runtime where it matches PyTorch (and, on a GPU, is faster)."""

from __future__ import annotations

from pathlib import Path

import torch

from veracity.checkpoint import load_checkpoint
from veracity.inference.engines import choose_engine
from veracity.inference.predictor import create_predictor


class FakeEngine:
    def __init__(self, name: str, device: str, offset: float = 0.0) -> None:
        self.name = name
        self.device = torch.device(device)
        self.offset = offset

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = batch.flatten(1)[:, :2] + self.offset
        return logits, batch.flatten(1)[:, :4]


def test_auto_serves_onnx_on_cpu(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    predictor = create_predictor(
        checkpoint, torch.device("cpu"), backend="auto", export_dir=tmp_path
    )
    assert predictor.backend.name == "onnx"


def test_an_engine_that_disagrees_with_pytorch_is_not_used() -> None:
    onnx, eager = FakeEngine("onnx", "cpu", offset=0.01), FakeEngine("torch", "cpu")
    assert choose_engine(onnx, eager, (3, 8, 8)) is eager
    close = FakeEngine("onnx", "cpu", offset=1e-5)
    assert choose_engine(close, eager, (3, 8, 8)) is close


def test_on_a_gpu_the_faster_engine_is_taken() -> None:
    onnx, eager = FakeEngine("onnx", "cuda"), FakeEngine("torch", "cuda")
    seconds = {"onnx": 0.02, "torch": 0.01}
    chosen = choose_engine(onnx, eager, (3, 8, 8), clock=lambda e, _: seconds[e.name])
    assert chosen is eager
    seconds = {"onnx": 0.005, "torch": 0.01}
    assert choose_engine(onnx, eager, (3, 8, 8), clock=lambda e, _: seconds[e.name]) is onnx
