"""Turning decoded images into real/fake probabilities with a loaded checkpoint.

The CLI's ``predict`` and the service both go through ``Predictor``, so an image gets the same
numbers offline and over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import torch

from veracity.checkpoint import Checkpoint
from veracity.errors import ConfigurationError
from veracity.images import DEFAULT_FORMATS, DEFAULT_MAX_PIXELS, load_rgb
from veracity.inference.backends import Backend, BackendName, OnnxBackend, TorchBackend
from veracity.preprocess import EvalTransform


@dataclass(frozen=True)
class Prediction:
    real_prob: float
    fake_prob: float

    @property
    def label(self) -> Literal["real", "fake"]:
        return "fake" if self.fake_prob > self.real_prob else "real"


class Predictor:
    """Preprocess and classify images with one checkpoint on one device. Thread-safe for
    ``preprocess``; ``predict`` runs one forward pass per call."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: torch.device,
        *,
        backend: Backend | None = None,
        formats: Iterable[str] = DEFAULT_FORMATS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.model = checkpoint.model.to(device).eval()
        self.backend: Backend = backend or TorchBackend(self.model, device)
        self.transform = EvalTransform(checkpoint.preprocess)
        self.formats = tuple(formats)
        self.max_pixels = max_pixels
        names = checkpoint.metadata.class_names
        self._real_index, self._fake_index = names.index("real"), names.index("fake")

    def preprocess(self, source: bytes | Path | BinaryIO) -> torch.Tensor:
        """Untrusted bytes or a file -> the model's input tensor (3, H, W).

        Raises:
            InvalidImageError: and its subclasses, for anything that is not an accepted image.
        """
        image = load_rgb(
            source,
            formats=self.formats,
            max_pixels=self.max_pixels,
            min_size=self.transform.config.min_decode_size,
        )
        return self.transform(image)

    def predict(self, batch: Sequence[torch.Tensor] | torch.Tensor) -> list[Prediction]:
        """Classify preprocessed tensors in one forward pass."""
        inputs = batch if isinstance(batch, torch.Tensor) else torch.stack(list(batch))
        logits = self.backend(inputs)
        # float64 so the two probabilities sum to 1 to within 1e-15, as the contract promises.
        probs = torch.softmax(logits.double(), dim=1).tolist()
        return [
            Prediction(real_prob=row[self._real_index], fake_prob=row[self._fake_index])
            for row in probs
        ]


def create_predictor(
    checkpoint: Checkpoint,
    device: torch.device,
    *,
    backend: BackendName = "torch",
    export_dir: Path | None = None,
    threads: int | None = None,
    formats: Iterable[str] = DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Predictor:
    """A Predictor on the named backend; for ``onnx``, the export cached in ``export_dir``.

    Raises:
        CheckpointError: the model cannot be exported to ONNX.
        ConfigurationError: the backend cannot run on ``device``.
    """
    engine: Backend | None = None
    if backend == "onnx":
        from veracity.export import ensure_onnx

        if export_dir is None:
            raise ConfigurationError("the onnx backend needs an export directory")
        engine = OnnxBackend(ensure_onnx(checkpoint, export_dir), device, threads=threads)
    return Predictor(checkpoint, device, backend=engine, formats=formats, max_pixels=max_pixels)
