"""Turning decoded images into calibrated probabilities and verdicts with a loaded checkpoint.

The CLI's ``predict``, ``evaluate`` and the service all go through ``Predictor``, so an image
gets the same numbers and the same verdict offline and over HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal

import torch
from PIL import Image

from veracity.checkpoint import Checkpoint
from veracity.errors import CheckpointError, ConfigurationError
from veracity.faces import FaceDetector, crop_face
from veracity.images import (
    DEFAULT_DECODE_BUDGET,
    DEFAULT_FORMATS,
    DEFAULT_MAX_PIXELS,
    DecodeBudget,
    load_image,
)
from veracity.inference.attribution import grad_cam_grid
from veracity.inference.backends import Backend, TorchBackend
from veracity.inference.engines import choose_engine, onnx_engine, with_precision
from veracity.preprocess import ImageTransform, pool_patch_logits
from veracity.runtime import BackendChoice, Precision
from veracity.similarity.phash import hash_image
from veracity.verdicts import robustness
from veracity.verdicts.calibration import IDENTITY
from veracity.verdicts.decision import Stability, Verdict, VerdictPolicy, decide
from veracity.verdicts.quality import InputQuality, Reason, measure, quality_reasons

logger = logging.getLogger("veracity.predictor")


@dataclass(frozen=True)
class Prediction:
    """One image's model output: calibrated probabilities and the gate's distance."""

    real_prob: float
    fake_prob: float
    score: float  # logit_fake - logit_real, averaged over patches (before calibration)
    raw_fake_prob: float  # sigmoid(score): the uncalibrated probability
    ood_score: float | None  # distance / threshold (None: the checkpoint has no gate)
    # Patches checkpoints: each patch's score through the calibration map, in the
    # transform's patch order (row-major from the top-left; see inference/explanation.py).
    patch_fake_probs: tuple[float, ...] = ()

    @property
    def label(self) -> Literal["real", "fake"]:
        return "fake" if self.fake_prob > self.real_prob else "real"


# What a face checkpoint answers when there is no face: no evidence either way.
NO_EVIDENCE = Prediction(real_prob=0.5, fake_prob=0.5, score=0.0, raw_fake_prob=0.5, ood_score=None)


@dataclass(frozen=True)
class PreparedImage:
    """A decoded upload, ready for the model, with what the quality gates measured."""

    inputs: tuple[torch.Tensor, ...]  # each (patches, 3, H, W): the image, or one per face
    quality: InputQuality
    variants: dict[str, torch.Tensor]  # robustness variants (empty unless asked for)
    faces: int | None = None  # faces found (face checkpoints); None: the whole image is read
    perceptual_hash: str | None = None  # of the decoded upload, where asked for

    @property
    def tensor(self) -> torch.Tensor:
        """The one model input of a whole-image checkpoint (the first face's otherwise)."""
        if not self.inputs:
            raise ConfigurationError("no face was found: there is no input for the model")
        return self.inputs[0]


class Predictor:
    """Preprocess, classify and judge images with one checkpoint on one device.

    ``prepare``/``preprocess`` are thread-safe; ``predict`` runs one forward pass per call.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: torch.device,
        *,
        backend: Backend | None = None,
        formats: Iterable[str] = DEFAULT_FORMATS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        policy: VerdictPolicy | None = None,
        decode_budget: DecodeBudget = DEFAULT_DECODE_BUDGET,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.model = checkpoint.model.to(device).eval()
        self.backend: Backend = backend or TorchBackend(self.model, device)
        self.config = checkpoint.preprocess
        self.transform = ImageTransform(self.config)
        self.face_detector = FaceDetector()
        if self.config.face_crop:
            # A missing detector model fails the checkpoint's load, not each request.
            self.face_detector.load()
        self.formats = tuple(formats)
        self.max_pixels = max_pixels
        self.decode_budget = decode_budget
        self.policy = policy or VerdictPolicy()
        self.calibrator = checkpoint.calibrator
        self.reference = checkpoint.reference
        calibration = checkpoint.metadata.calibration
        self._ood_threshold = calibration.ood_threshold if calibration is not None else None
        names = checkpoint.metadata.class_names
        self._real_index, self._fake_index = names.index("real"), names.index("fake")

    def prepare(
        self,
        source: bytes | Path | BinaryIO,
        *,
        robustness_check: bool,
        perceptual_hash: bool = False,
    ) -> PreparedImage:
        """Untrusted bytes or a file -> model inputs and quality measurements (and, where
        asked for, the perceptual hash of the same decoded image: one decode serves both).

        Raises:
            InvalidImageError: and its subclasses, for anything that is not an accepted image
                or that would cost more than ``decode_budget`` to decode.
        """
        decoded = load_image(
            source,
            formats=self.formats,
            max_pixels=self.max_pixels,
            min_size=self.config.min_decode_size,
            budget=self.decode_budget,
        )
        quality = measure(decoded.image, decoded.jpeg_quality, decoded.size)
        prepared = self.prepare_decoded(decoded.image, quality, robustness_check=robustness_check)
        if not perceptual_hash:
            return prepared
        return replace(prepared, perceptual_hash=hash_image(decoded.image))

    def prepare_decoded(
        self, image: Image.Image, quality: InputQuality, *, robustness_check: bool
    ) -> PreparedImage:
        """An upright RGB image (an upload or a video frame) -> the model's inputs.

        Face checkpoints read each detected face's crop (none found: no input, and the
        verdict says ``no_face``); the robustness check is not run on face crops.
        """
        if self.config.face_crop:
            crops = [
                crop_face(image, box, self.config.face_margin)
                for box in self.face_detector.detect(image)
            ]
            return PreparedImage(
                tuple(self.transform(c) for c in crops), quality, {}, faces=len(crops)
            )
        variants: dict[str, torch.Tensor] = {}
        if robustness_check:
            for name, variant in robustness.variants(image, min_side=self.config.min_side).items():
                variants[name] = self.transform(variant)
        return PreparedImage((self.transform(image),), quality, variants)

    def preprocess(self, source: bytes | Path | BinaryIO) -> torch.Tensor:
        """Untrusted bytes or a file -> the model's input tensor (patches, 3, H, W)."""
        return self.prepare(source, robustness_check=False).tensor

    def predict(self, batch: Sequence[torch.Tensor] | torch.Tensor) -> list[Prediction]:
        """Classify preprocessed images, each (patches, 3, H, W), in one forward pass."""
        items = list(batch) if not isinstance(batch, torch.Tensor) else list(batch.unbind(0))
        if not items:
            return []
        patches = items[0].shape[0]
        if any(item.shape != items[0].shape for item in items):
            raise ConfigurationError("every image in a batch must have the same patch shape")
        logits, features = self.backend(torch.cat(items))
        # float64 so the two probabilities sum to 1 to within 1e-15, as the contract promises.
        per_image = pool_patch_logits(
            logits.double(), patches, self.config.patch_pooling, self._fake_index
        )
        scores = (per_image[:, self._fake_index] - per_image[:, self._real_index]).tolist()
        patch_probs = self._patch_fake_probs(logits.double(), patches)
        distances: list[float | None] = [None] * len(items)
        if self.reference is not None and self._ood_threshold is not None:
            measured = self.reference.image_scores(features, patches) / self._ood_threshold
            distances = [round(float(d), 4) for d in measured]
        out = []
        for score, distance, per_patch in zip(scores, distances, patch_probs, strict=True):
            fake = self.calibrator.fake_prob(score)
            out.append(
                Prediction(
                    real_prob=1.0 - fake,
                    fake_prob=fake,
                    score=score,
                    raw_fake_prob=IDENTITY.fake_prob(score),
                    ood_score=distance,
                    patch_fake_probs=per_patch,
                )
            )
        return out

    def grad_cam(self, prepared: PreparedImage) -> tuple[tuple[float, ...], ...]:
        """Grad-CAM of the fake-minus-real score over the prepared image's patches (see
        ``attribution``): on the PyTorch model, whatever backend serves the scores."""
        patch_grid = self.config.patch_grid if self.config.mode == "patches" else 1
        fake, real = self._fake_index, self._real_index
        return grad_cam_grid(
            self.model,
            prepared.tensor.to(self.device),
            patch_grid=patch_grid,
            score=lambda logits: logits[:, fake] - logits[:, real],
        )

    def _patch_fake_probs(self, logits: torch.Tensor, patches: int) -> list[tuple[float, ...]]:
        """Each image's patch scores through the calibration map (empty for one patch)."""
        images = logits.shape[0] // patches
        if patches == 1:
            return [()] * images
        per_patch = logits.view(images, patches, -1)
        scores = per_patch[..., self._fake_index] - per_patch[..., self._real_index]
        probs = self.calibrator.fake_probs(scores.detach().cpu().numpy())
        return [tuple(float(p) for p in row) for row in probs]

    def judge_prepared(
        self,
        prepared: PreparedImage,
        predictions: Sequence[Prediction],
        variants: dict[str, Prediction] | None = None,
    ) -> tuple[Prediction, Verdict]:
        """The verdict for a prepared upload from its inputs' predictions: the most
        suspicious face for face checkpoints (``no_face`` when there is none)."""
        if prepared.faces == 0:
            reason = Reason(
                "no_face",
                "no face was found; this model judges faces (frontal or near-frontal, at "
                "least about 24 px at 640 px across).",
            )
            verdict = self.judge(NO_EVIDENCE, prepared.quality, extra_reasons=[reason])
            # 0.5 is no evidence, not a probability near the threshold: say only why.
            kept = tuple(r for r in verdict.reasons if r.code != "near_threshold")
            return NO_EVIDENCE, replace(verdict, reasons=kept, faces=0)
        chosen = max(predictions, key=lambda p: p.fake_prob)
        verdict = self.judge(chosen, prepared.quality, variants)
        return chosen, replace(verdict, faces=prepared.faces)

    def predict_prepared(self, items: Sequence[PreparedImage]) -> list[tuple[Prediction, Verdict]]:
        """Classify and judge prepared images (without variants) in one forward pass over
        all their inputs (a face checkpoint's faces included)."""
        predictions = self.predict([t for item in items for t in item.inputs])
        out, start = [], 0
        for item in items:
            mine = predictions[start : start + len(item.inputs)]
            start += len(item.inputs)
            out.append(self.judge_prepared(item, mine))
        return out

    def judge(
        self,
        prediction: Prediction,
        quality: InputQuality,
        variants: dict[str, Prediction] | None = None,
        *,
        extra_reasons: Sequence[Reason] = (),
    ) -> Verdict:
        """The verdict for ``prediction``, with the gates and the optional self-check."""
        thresholds = self.policy.thresholds
        stability = None
        if variants:
            original = thresholds.classify(prediction.fake_prob)
            flipped = tuple(
                name
                for name, p in variants.items()
                if {original, thresholds.classify(p.fake_prob)} == {"real", "fake"}
            )
            change = max(abs(p.fake_prob - prediction.fake_prob) for p in variants.values())
            stability = Stability(
                score=round(1.0 - change, 4),
                variants={name: p.fake_prob for name, p in variants.items()},
                flipped=flipped,
            )
        return decide(
            prediction.fake_prob,
            thresholds=thresholds,
            gate_reasons=[
                *quality_reasons(quality, self.policy.quality, self.config.min_side),
                *extra_reasons,
            ],
            ood_score=prediction.ood_score,
            quality=quality,
            stability=stability,
        )

    def classify(self, source: bytes | Path | BinaryIO, *, robustness_check: bool) -> Verdict:
        """Prepare, predict and judge one image in one forward pass (the CLI's path)."""
        return self.assess(source, robustness_check=robustness_check)[1]

    def assess(
        self, source: bytes | Path | BinaryIO, *, robustness_check: bool
    ) -> tuple[Prediction, Verdict]:
        """As ``classify``, with the prediction that decided (its patches' probabilities)."""
        prepared = self.prepare(source, robustness_check=robustness_check)
        names = list(prepared.variants)
        predictions = self.predict([*prepared.inputs, *prepared.variants.values()])
        count = len(prepared.inputs)
        variants = dict(zip(names, predictions[count:], strict=True))
        return self.judge_prepared(prepared, predictions[:count], variants)


def create_predictor(
    checkpoint: Checkpoint,
    device: torch.device,
    *,
    backend: BackendChoice = "torch",
    export_dir: Path | None = None,
    threads: int | None = None,
    formats: Iterable[str] = DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    policy: VerdictPolicy | None = None,
    decode_budget: DecodeBudget = DEFAULT_DECODE_BUDGET,
    precision: Precision = "fp32",
) -> Predictor:
    """A Predictor on the named backend; for ``onnx``, the export cached in ``export_dir``.

    ``precision`` ``int8`` serves the quantised graph ``veracity quantize`` left in
    ``export_dir`` if its check against FP32 passed, ``auto`` only if it also measures
    faster here; otherwise (and on any other backend) FP32, saying why in the log.

    ``auto`` takes ONNX Runtime where it runs on ``device`` (its CPU provider; its CUDA
    provider where the GPU build is installed) and agrees with PyTorch eager on this
    checkpoint, and PyTorch eager otherwise, saying why in the log.

    Raises:
        CheckpointError: the model cannot be exported to ONNX (``onnx`` only).
        ConfigurationError: the backend cannot run on ``device`` (``onnx`` only).
    """
    engine: Backend | None = None
    if backend in ("onnx", "auto"):
        try:
            engine = onnx_engine(checkpoint, device, export_dir, threads)
        except (CheckpointError, ConfigurationError, ImportError) as e:
            if backend == "onnx":
                raise
            logger.info(
                "backend auto: PyTorch eager, ONNX Runtime is not usable here",
                extra={"reason": getattr(e, "message", None) or str(e)[:300]},
            )
    predictor = Predictor(
        checkpoint,
        device,
        backend=engine,
        formats=formats,
        max_pixels=max_pixels,
        policy=policy,
        decode_budget=decode_budget,
    )
    if backend == "auto" and engine is not None:
        predictor.backend = choose_engine(
            engine, TorchBackend(predictor.model, device), predictor.config.input_size
        )
    if precision != "fp32":
        predictor.backend = with_precision(
            predictor.backend, checkpoint, precision, export_dir=export_dir, threads=threads
        )
    return predictor
