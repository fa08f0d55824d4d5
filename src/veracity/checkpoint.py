"""Checkpoints: safetensors weights plus a JSON metadata file beside them.

``NAME.safetensors`` holds only tensors (no code can run when it is read) and ``NAME.json``
holds what is needed to rebuild and trust them: architecture, class order, the exact eval
transform, version, metrics and the weights' SHA-256. Loading checks every one of those
against the file and the rebuilt model, and names what does not match.

Format 2 adds calibration: the score-to-probability map and the out-of-distribution gate's
threshold in the metadata (under their own ``calibration.version``), and the gate's
reference statistics in ``NAME.calibration.safetensors``, verified by SHA-256 like the
weights. ``veracity calibrate`` rewrites both without touching the weights. Format-1 files
still load (uncalibrated, resize preprocessing, no gate).

A calibrated checkpoint may also carry a drift profile, ``NAME.drift.json``: what the
served pipeline answered on the calibration data (veracity.drift), the reference live
traffic is compared with. Its SHA-256 is in the metadata and checked on every load, like
the weights': a profile edited to hide a shift is refused, not believed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from veracity.errors import CheckpointError, ConfigurationError
from veracity.preprocess import (
    CropMode,
    Interpolation,
    PatchPooling,
    PreprocessConfig,
    PreprocessMode,
)
from veracity.verdicts.calibration import CalibrationMethod, Calibrator
from veracity.verdicts.ood import ReferenceStats

FORMAT_VERSION: Literal[2] = 2
WEIGHTS_SUFFIX = ".safetensors"
METADATA_SUFFIX = ".json"
CALIBRATION_SUFFIX = ".calibration.safetensors"
DRIFT_SUFFIX = ".drift.json"
LEGACY_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class PreprocessMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Interpolation
    crop_pct: Annotated[float, Field(gt=0.0, le=1.0)]
    crop_mode: CropMode
    # Absent from format-1 files, which all resize.
    mode: PreprocessMode = "resize"
    patch_grid: Annotated[int, Field(ge=1, le=8)] = 1
    patch_pooling: PatchPooling = "mean"
    face_crop: bool = False
    face_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 1 / 3
    max_side: Annotated[int, Field(ge=1)] | None = None

    def to_config(self) -> PreprocessConfig:
        return PreprocessConfig(**self.model_dump())

    @classmethod
    def from_config(cls, config: PreprocessConfig) -> PreprocessMetadata:
        return cls(
            input_size=config.input_size,
            mean=config.mean,
            std=config.std,
            interpolation=config.interpolation,
            crop_pct=config.crop_pct,
            crop_mode=config.crop_mode,
            mode=config.mode,
            patch_grid=config.patch_grid,
            patch_pooling=config.patch_pooling,
            face_crop=config.face_crop,
            face_margin=config.face_margin,
            max_side=config.max_side,
        )


class CalibrationMetadata(BaseModel):
    """How scores become probabilities, and where the out-of-distribution gate stands."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, Field(ge=1)] = Field(
        description="Incremented by every refit; reported with each verdict."
    )
    fitted_at: datetime
    method: CalibrationMethod
    slope: float
    intercept: float
    reference_sha256: Sha256 = Field(description="SHA-256 of NAME.calibration.safetensors.")
    ood_threshold: Annotated[float, Field(gt=0)]
    ood_rule: str = Field(description="How the threshold was chosen on validation data.")
    data: str = Field(description="The data the calibration and threshold were fitted on.")
    images: dict[str, int]
    metrics: dict[str, float] = Field(default_factory=dict)

    @property
    def calibrator(self) -> Calibrator:
        return Calibrator(method=self.method, slope=self.slope, intercept=self.intercept)


class DriftProfileRecord(BaseModel):
    """Where the drift profile came from, and the hash that binds it to this checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: Sha256 = Field(description="SHA-256 of NAME.drift.json.")
    built_at: datetime
    answers: Annotated[int, Field(ge=1)] = Field(description="Answers the profile counts.")
    calibration_version: int | None = Field(
        description="The calibration the answers were judged with."
    )
    data: str = Field(description="The data the profile was built on.")


class CheckpointMetadata(BaseModel):
    """The JSON file beside the weights. ``extra="forbid"``: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    format_version: Literal[1, 2]
    architecture: Annotated[str, Field(min_length=1)]
    class_names: tuple[str, ...]
    preprocess: PreprocessMetadata
    model_name: Annotated[str, Field(min_length=1)]
    model_version: Annotated[str, Field(min_length=1)]
    created_at: datetime
    weights_sha256: Sha256
    metrics: dict[str, float] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    calibration: CalibrationMetadata | None = None
    drift_profile: DriftProfileRecord | None = None


@dataclass(frozen=True)
class CheckpointPaths:
    weights: Path
    metadata: Path

    @property
    def calibration(self) -> Path:
        return self.weights.with_name(
            self.weights.name.removesuffix(WEIGHTS_SUFFIX) + CALIBRATION_SUFFIX
        )

    @property
    def drift_profile(self) -> Path:
        return self.weights.with_name(self.weights.name.removesuffix(WEIGHTS_SUFFIX) + DRIFT_SUFFIX)

    @classmethod
    def resolve(cls, path: Path) -> CheckpointPaths:
        """Accept ``NAME.safetensors``, ``NAME.json`` or a bare ``NAME``."""
        if path.suffix.lower() in LEGACY_SUFFIXES:
            raise CheckpointError(
                f"{path} is a legacy PyTorch checkpoint; convert it once with "
                f"`veracity convert-legacy {path} --out NAME.safetensors`"
            )
        base = path.with_suffix("") if path.suffix in (WEIGHTS_SUFFIX, METADATA_SUFFIX) else path
        base = base.with_name(base.name.removesuffix(".calibration"))
        if path.name.endswith(DRIFT_SUFFIX):
            base = base.with_name(base.name.removesuffix(".drift"))
        return cls(
            weights=base.with_name(base.name + WEIGHTS_SUFFIX),
            metadata=base.with_name(base.name + METADATA_SUFFIX),
        )


@dataclass(frozen=True)
class Checkpoint:
    model: nn.Module
    metadata: CheckpointMetadata
    paths: CheckpointPaths
    reference: ReferenceStats | None = None  # present when the checkpoint is calibrated

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.metadata.preprocess.to_config()

    @property
    def calibrator(self) -> Calibrator:
        calibration = self.metadata.calibration
        return calibration.calibrator if calibration is not None else Calibrator()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, *, what: str, otherwise: str) -> None:
    """Raise a CheckpointError naming both hashes unless ``path`` hashes to ``expected``."""
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(
            f"{what} {path} has SHA-256 {actual}, but its metadata records {expected}: {otherwise}"
        )


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)``, then move tmp over ``path``: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp creates 0600 files; a checkpoint must be readable by the (often different)
        # user that serves it.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: Path,
    model: nn.Module,
    *,
    architecture: str,
    class_names: tuple[str, ...],
    preprocess: PreprocessConfig,
    model_name: str,
    model_version: str,
    metrics: Mapping[str, float] | None = None,
    training: Mapping[str, Any] | None = None,
) -> CheckpointMetadata:
    """Write ``path`` (weights) and its metadata file; return the metadata written."""
    paths = CheckpointPaths.resolve(path)
    # Cloning breaks storage sharing (tied weights), which safetensors refuses to write.
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    atomic_write(paths.weights, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    metadata = CheckpointMetadata(
        format_version=FORMAT_VERSION,
        architecture=architecture,
        class_names=class_names,
        preprocess=PreprocessMetadata.from_config(preprocess),
        model_name=model_name,
        model_version=model_version,
        created_at=datetime.now(UTC),
        weights_sha256=file_sha256(paths.weights),
        metrics=dict(metrics or {}),
        training=dict(training or {}),
    )
    write_metadata(paths, metadata)
    return metadata


def write_metadata(paths: CheckpointPaths, metadata: CheckpointMetadata) -> None:
    text = metadata.model_dump_json(indent=2) + "\n"
    atomic_write(paths.metadata, lambda p: p.write_text(text, encoding="utf-8"))


def save_calibration(
    path: Path, reference: ReferenceStats, calibration: CalibrationMetadata
) -> CheckpointMetadata:
    """Write the reference statistics beside ``path``'s weights and record ``calibration``
    (with the statistics' SHA-256) in its metadata; the weights are not touched.

    The statistics are written first: until the metadata names their new hash, a reader
    sees the old metadata, whose hash no longer matches, and refuses rather than mixes.
    """
    paths = CheckpointPaths.resolve(path)
    metadata = read_metadata(paths.weights)
    tensors = {k: v.detach().cpu().contiguous() for k, v in reference.tensors().items()}
    atomic_write(paths.calibration, lambda p: save_file(tensors, str(p)))
    recorded = calibration.model_copy(update={"reference_sha256": file_sha256(paths.calibration)})
    # A profile of answers judged with the previous calibration no longer describes this one.
    updated = metadata.model_copy(
        update={"format_version": 2, "calibration": recorded, "drift_profile": None}
    )
    # Validate the combination, as a reader will.
    updated = CheckpointMetadata.model_validate(updated.model_dump())
    write_metadata(paths, updated)
    return updated


def save_drift_profile(
    path: Path, profile: bytes, record: DriftProfileRecord
) -> CheckpointMetadata:
    """Write the drift profile beside ``path``'s weights and record it (with its SHA-256)
    in the metadata; like ``save_calibration``, the file goes first."""
    paths = CheckpointPaths.resolve(path)
    metadata = read_metadata(paths.weights)
    atomic_write(paths.drift_profile, lambda p: p.write_bytes(profile))
    recorded = record.model_copy(update={"sha256": file_sha256(paths.drift_profile)})
    updated = metadata.model_copy(update={"drift_profile": recorded})
    write_metadata(paths, updated)
    return updated


def read_drift_profile(paths: CheckpointPaths, metadata: CheckpointMetadata) -> bytes | None:
    """The verified bytes of the checkpoint's drift profile (None if it has none).

    Raises:
        CheckpointError: the metadata records a profile that is missing or was changed.
    """
    record = metadata.drift_profile
    if record is None:
        return None
    if not paths.drift_profile.is_file():
        raise CheckpointError(
            f"drift profile {paths.drift_profile} not found, but {paths.metadata} records "
            "one; copy it beside the weights or rebuild it with `veracity calibrate "
            "--profile-only`"
        )
    data = paths.drift_profile.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise CheckpointError(
            f"drift profile {paths.drift_profile} does not match the SHA-256 in "
            f"{paths.metadata}: it was modified or belongs to another checkpoint"
        )
    return data


def load_reference(paths: CheckpointPaths, metadata: CheckpointMetadata) -> ReferenceStats | None:
    """The verified reference statistics of a calibrated checkpoint (None if uncalibrated)."""
    calibration = metadata.calibration
    if calibration is None:
        return None
    if not paths.calibration.is_file():
        raise CheckpointError(
            f"calibration file {paths.calibration} not found, but {paths.metadata} records "
            "a calibration; copy it beside the weights or refit it with `veracity calibrate`"
        )
    verify_sha256(
        paths.calibration,
        calibration.reference_sha256,
        what="calibration file",
        otherwise="it was modified or belongs to another calibration",
    )
    try:
        return ReferenceStats.from_tensors(load_file(str(paths.calibration), device="cpu"))
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise CheckpointError(
            f"calibration file {paths.calibration} is not valid reference statistics: {e}"
        ) from e


def read_metadata(path: Path) -> CheckpointMetadata:
    """Read and validate a checkpoint's metadata file without touching the weights."""
    paths = CheckpointPaths.resolve(path)
    if not paths.metadata.is_file():
        raise CheckpointError(
            f"metadata file {paths.metadata} not found; a checkpoint is NAME{WEIGHTS_SUFFIX} "
            f"with NAME{METADATA_SUFFIX} beside it"
        )
    try:
        raw = json.loads(paths.metadata.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"metadata file {paths.metadata} is not valid JSON: {e}") from e
    try:
        return CheckpointMetadata.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in e.errors()
        )
        raise CheckpointError(f"metadata file {paths.metadata} is invalid: {problems}") from e


def load_checkpoint(
    path: Path,
    *,
    expected_classes: tuple[str, ...] | None = None,
    device: str | torch.device = "cpu",
    with_calibration: bool = True,
    verify_drift_profile: bool = True,
) -> Checkpoint:
    """Load and verify a checkpoint; the returned model is in eval mode on ``device``.

    ``with_calibration=False`` skips the calibration file (training resumes, and
    ``veracity calibrate``, which replaces it); ``verify_drift_profile=False`` skips the
    drift profile's check (``veracity calibrate --profile-only``, which replaces it).

    Raises:
        CheckpointError: missing files, invalid metadata, a weights hash that does not match,
            classes other than ``expected_classes``, or weights that do not fit the
            architecture. The message names what is wrong.
    """
    # Imported here so reading metadata (e.g. for /model) never pays for importing timm.
    from veracity.models import (
        CLASS_NAMES,
        check_state_dict_fits,
        create_classifier,
        feature_layers,
    )

    paths = CheckpointPaths.resolve(path)
    metadata = read_metadata(paths.weights)
    if not paths.weights.is_file():
        raise CheckpointError(f"weights file {paths.weights} not found")
    verify_sha256(
        paths.weights,
        metadata.weights_sha256,
        what="weights file",
        otherwise="the weights were modified or the metadata belongs to another checkpoint",
    )
    wanted = expected_classes if expected_classes is not None else CLASS_NAMES
    if metadata.class_names != wanted:
        raise CheckpointError(
            f"checkpoint classes {list(metadata.class_names)} do not match the expected "
            f"{list(wanted)} (count and order both matter)"
        )
    try:
        state_dict = load_file(str(paths.weights), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"weights file {paths.weights} is not valid safetensors: {e}") from e
    try:
        model = create_classifier(metadata.architecture, num_classes=len(metadata.class_names))
    except ConfigurationError as e:
        raise CheckpointError(f"cannot build the checkpoint's architecture: {e.message}") from e
    check_state_dict_fits(model, state_dict, architecture=metadata.architecture)
    model.load_state_dict(state_dict)
    model.eval()
    model.to(device)
    reference = load_reference(paths, metadata) if with_calibration else None
    if with_calibration and verify_drift_profile:
        read_drift_profile(paths, metadata)  # refuse a checkpoint whose profile was changed
    if reference is not None:
        layers = feature_layers(model, metadata.preprocess.input_size)
        if reference.layers != layers:
            raise CheckpointError(
                f"calibration file {paths.calibration} holds statistics for feature groups "
                f"{reference.layers}, but the model's are {layers}; refit it with "
                "`veracity calibrate`"
            )
    if not with_calibration:
        metadata = metadata.model_copy(update={"calibration": None, "drift_profile": None})
    return Checkpoint(model=model, metadata=metadata, paths=paths, reference=reference)


def read_legacy_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a legacy ``.pth`` state dict without executing pickled code.

    ``torch.load(weights_only=True)`` only reconstructs tensors and plain containers; a file
    that needs anything else is refused rather than trusted.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"legacy checkpoint {path} not found") from e
    except Exception as e:
        raise CheckpointError(
            f"{path} cannot be read safely (weights_only=True refused it): {e}"
        ) from e
    # Training scripts commonly wrap the weights: {"state_dict": ...} or {"model": ...}.
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CheckpointError(f"{path} does not contain a state dict of named tensors")
    # nn.DataParallel / DistributedDataParallel prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in loaded.items()}
