"""Inference backends: PyTorch eager (the reference) and ONNX Runtime.

A backend turns a float32 batch (N, 3, H, W) into logits (N, classes) and pooled features
(N, D) for the out-of-distribution gate. Both are built from the same checkpoint; the ONNX
model is exported from it and cached under its weights' SHA-256 (see veracity.export), so a
changed checkpoint can never run against a stale export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from veracity.errors import ConfigurationError

# Named where settings can read them without torch; kept importable here for the callers.

# The most an engine's logits may differ from PyTorch eager's to be used by "auto".
PARITY_TOLERANCE = 1e-3


class Backend(Protocol):
    name: str
    device: torch.device

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class TorchBackend:
    """PyTorch eager on the model's device."""

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        from veracity.models import ScoringModel

        self.model = ScoringModel(model.to(device).eval()).eval()
        self.device = device

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            logits, features = self.model(batch.to(self.device, non_blocking=True))
        return logits.float().cpu(), features.float().cpu()


class OnnxBackend:
    """ONNX Runtime: the CPU provider, or CUDA's where the device is a GPU."""

    name = "onnx"

    def __init__(
        self, model_path: Path, device: torch.device, *, threads: int | None, name: str = "onnx"
    ) -> None:
        import onnxruntime as ort  # imported only by deployments that choose this backend

        self.name = name  # "onnx-int8" for a quantised graph
        self.fingerprint: str | None = None  # a quantised graph's SHA-256 (the cache key's)

        available = ort.get_available_providers()
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise ConfigurationError(
                    "backend 'onnx' on device 'cuda' needs onnxruntime with the CUDA provider "
                    f"(available: {', '.join(available)}); install onnxruntime-gpu or use "
                    "backend 'torch'"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device.type == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise ConfigurationError(f"backend 'onnx' does not support device {device.type!r}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        # One batch at a time is submitted (the inference thread), so no inter-op pool.
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        self._input = self.session.get_inputs()[0].name
        self.device = device

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        logits, features = self.session.run(None, {self._input: inputs})[:2]
        return (
            torch.from_numpy(np.asarray(logits, dtype=np.float32)),
            torch.from_numpy(np.asarray(features, dtype=np.float32)),
        )
