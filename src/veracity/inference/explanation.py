"""Where in the image the model saw the evidence: a grid of calibrated per-patch probabilities.

A patches checkpoint scores ``patch_grid`` x ``patch_grid`` native-resolution patches
(``preprocess.PatchTransform``) and pools their logits into the image's. The explanation is
those patches' own probabilities, laid out where they were taken: the image is divided
evenly into ``patch_grid`` rows and columns, and cell (row, col) holds the probability of
patch ``row * patch_grid + col``. Patch starts are spread evenly from the image's top-left
corner to its bottom-right (``preprocess.patch_origins``).

Checkpoints with ``max_side`` (those trained on the real-photo corpus) first shrink an
image whose longer side exceeds it (``patch_grid`` patch widths), so the patches tile the
whole image: each cell is read whole (on the shorter side a patch also reaches into its
neighbours, since the patches overlap there). Without ``max_side`` a patch is a sample
of its cell, not all of it: a 64 px patch in a 1920x1080 image's 480x270 cell sees 3%
of it.

Each cell's number is the checkpoint's calibration map applied to that patch's
fake-minus-real logit. The map was fitted on pooled image scores, so a cell is comparable
with the other cells and with ``fake_prob``, but it is not itself a calibrated probability
that the patch is manipulated. With ``max`` pooling the image's score is its most
suspicious patch's, so the highest cell equals ``fake_prob``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from veracity.inference.predictor import Prediction
from veracity.preprocess import PreprocessConfig

ExplanationMethod = Literal["patch_probabilities", "grad_cam", "unavailable"]
# What a client may ask for (`unavailable` is an answer, never a request).
REQUESTABLE: tuple[ExplanationMethod, ...] = ("patch_probabilities", "grad_cam")
Grid = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class Explanation:
    method: ExplanationMethod
    grid: Grid | None  # rows, top first; each row left to right
    reason: str | None = None  # why there is no grid


def explain(config: PreprocessConfig, prediction: Prediction, faces: int | None) -> Explanation:
    """The explanation of ``prediction``, an image judged with ``config``'s transform."""
    if config.face_crop:
        return _unavailable(
            "this checkpoint reads face crops, not the whole image: its patches are placed "
            f"in a face's crop (faces found: {faces or 0}), not in the image."
        )
    if config.mode != "patches" or config.patch_grid < 2:
        return _unavailable(
            "this checkpoint reads the whole image as one resized crop, so it has no "
            "per-region scores; checkpoints that score patches answer a grid."
        )
    size = config.patch_grid
    probs = prediction.patch_fake_probs
    assert len(probs) == size * size, "one calibrated probability per patch"
    rounded = [round(p, 4) for p in probs]
    grid = tuple(tuple(rounded[row * size : (row + 1) * size]) for row in range(size))
    return Explanation(method="patch_probabilities", grid=grid)


def explain_grad_cam(
    config: PreprocessConfig, faces: int | None, compute: Callable[[], Grid]
) -> Explanation:
    """Grad-CAM's explanation (``attribution``), computed by ``compute`` only where it can
    be drawn over the image."""
    if config.face_crop:
        return _unavailable(
            "this checkpoint reads face crops, not the whole image, so a map of its "
            f"evidence would not lie over the image (faces found: {faces or 0})."
        )
    return Explanation(method="grad_cam", grid=compute())


def _unavailable(reason: str) -> Explanation:
    return Explanation(method="unavailable", grid=None, reason=reason)
