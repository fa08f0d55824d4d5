"""Building a checkpoint's drift profile: its calibration data judged as the service judges
uploads (decode, quality gates, patches, calibration, out-of-distribution gate, verdict),
each answer counted per drift signal (veracity.drift), written beside the weights.

Run by ``veracity calibrate`` after a refit (and by ``--profile-only`` for a checkpoint
calibrated before profiles existed) and at the end of ``veracity train``. The answers use
the default operating points: a deployment that moves its thresholds shifts its verdict
mix, and the verdict signal says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import torch

from veracity.checkpoint import (
    DriftProfileRecord,
    load_checkpoint,
    save_drift_profile,
)
from veracity.drift.profile import DriftProfile, build_profile, encode_profile
from veracity.drift.signals import Observation
from veracity.errors import DatasetError, InvalidImageError
from veracity.images import image_media_type
from veracity.inference.predictor import PreparedImage, create_predictor

# Judged this many at a time: the predictor's batches, bounded memory.
_CHUNK = 16


def profile_uploads(
    checkpoint: Path, uploads: Iterable[bytes], *, data: str, device: torch.device
) -> DriftProfile:
    """Judge every upload with ``checkpoint`` (calibrated) and count its answers, then
    store the profile beside the weights and record its hash in the metadata.

    Raises:
        DatasetError: no upload could be judged.
        CheckpointError: the checkpoint cannot be loaded.
    """
    # The profile being replaced may be the very thing that is missing or damaged.
    loaded = load_checkpoint(checkpoint, device=device, verify_drift_profile=False)
    predictor = create_predictor(loaded, device)
    observations: list[Observation] = []

    def judge(chunk: list[tuple[PreparedImage, str]]) -> None:
        judged = predictor.predict_prepared([prepared for prepared, _ in chunk])
        for (prepared, media_type), (prediction, verdict) in zip(chunk, judged, strict=True):
            quality = prepared.quality
            observations.append(
                Observation(
                    fake_prob=prediction.fake_prob,
                    verdict=verdict.verdict,
                    reasons=tuple(r.code for r in verdict.reasons),
                    ood_score=prediction.ood_score,
                    pixels=quality.width * quality.height,
                    jpeg_quality=quality.jpeg_quality,
                    media_type=media_type,
                )
            )

    chunk: list[tuple[PreparedImage, str]] = []
    for upload in uploads:
        try:
            chunk.append(
                (predictor.prepare(upload, robustness_check=False), image_media_type(upload))
            )
        except (InvalidImageError, OSError):
            continue  # counted by what is profiled; the data sets are checked elsewhere
        if len(chunk) == _CHUNK:
            judge(chunk)
            chunk = []
    if chunk:
        judge(chunk)
    if not observations:
        raise DatasetError(f"no image of {data} could be judged for the drift profile")
    metadata = loaded.metadata
    calibration = metadata.calibration
    profile = build_profile(
        observations,
        model_name=metadata.model_name,
        model_version=metadata.model_version,
        calibration_version=calibration.version if calibration is not None else None,
        built_at=datetime.now(UTC),
        data=data,
    )
    record = DriftProfileRecord(
        sha256="0" * 64,  # replaced by save_drift_profile with the file's hash
        built_at=profile.built_at,
        answers=profile.answers,
        calibration_version=profile.calibration_version,
        data=data,
    )
    save_drift_profile(checkpoint, encode_profile(profile), record)
    return profile
