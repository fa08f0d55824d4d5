"""The model repository on disk: ``ROOT/NAME/VERSION/`` holding one checkpoint.

Each version directory holds exactly one checkpoint: ``*.safetensors`` with its ``.json``
metadata beside it and, when calibrated, its ``.calibration.safetensors``. Names and
versions are path-safe identifiers, so they can travel in URLs and metric labels as they
are. Versions sort numerically where they are numbers (``10`` after ``9``) and as text
otherwise; a model serves its highest numbered version from start-up unless
``VERACITY_DEFAULT_MODEL`` pins another.

Scanning reads only the metadata files, never the weights, so it is cheap enough to repeat
whenever an admin asks about a version that was dropped in after start-up. A directory that
does not hold a valid checkpoint is reported with the reason, not silently skipped.

A deployment without a repository (``VERACITY_CHECKPOINT`` only) is a one-model repository:
the checkpoint's own ``model_name`` and ``model_version`` name it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from veracity.checkpoint import (
    CALIBRATION_SUFFIX,
    METADATA_SUFFIX,
    WEIGHTS_SUFFIX,
    CheckpointMetadata,
    CheckpointPaths,
    read_metadata,
)
from veracity.errors import CheckpointError, ModelNotFoundError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def version_key(version: str) -> tuple[int, int | str]:
    """Sort key: numbers by value, after them any other text in order."""
    return (0, int(version)) if version.isdigit() else (1, version)


def newest(versions: list[str]) -> str:
    """The version a model serves from start-up unless pinned: the highest number, or
    (no numbered version) the last name in order. A named version ("candidate",
    "broken-test") never displaces a numbered one by sorting after it."""
    return newest_first(versions)[0]


def newest_first(versions: list[str]) -> list[str]:
    """The versions a model may serve from start-up, in the order they are tried: the
    next one serves when a newer one fails to load (named ones only without numbers)."""
    numbered = [v for v in versions if v.isdigit()]
    return sorted(numbered or versions, key=version_key, reverse=True)


@dataclass(frozen=True)
class ModelVersion:
    """One version of one model in the repository (its metadata read, its weights not)."""

    name: str
    version: str
    checkpoint: Path  # the weights file; the metadata sits beside it
    metadata: CheckpointMetadata
    size_bytes: int  # weights and calibration files on disk

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)


@dataclass(frozen=True)
class Problem:
    """A version directory that holds no usable checkpoint, and why."""

    name: str
    version: str
    reason: str


def _disk_size(paths: CheckpointPaths) -> int:
    return sum(p.stat().st_size for p in (paths.weights, paths.calibration) if p.is_file())


def read_version(name: str, version: str, checkpoint: Path) -> ModelVersion:
    """The version whose weights are ``checkpoint``.

    Raises:
        CheckpointError: missing files or invalid metadata, with the reason.
    """
    paths = CheckpointPaths.resolve(checkpoint)
    metadata = read_metadata(paths.weights)
    if not paths.weights.is_file():
        raise CheckpointError(f"weights file {paths.weights} not found")
    return ModelVersion(name, version, paths.weights, metadata, _disk_size(paths))


def _checkpoint_in(directory: Path) -> Path:
    weights = sorted(
        p
        for p in directory.glob(f"*{WEIGHTS_SUFFIX}")
        if not p.name.endswith(CALIBRATION_SUFFIX) and p.is_file()
    )
    if len(weights) != 1:
        found = ", ".join(p.name for p in weights) or "none"
        raise CheckpointError(
            f"{directory} must hold exactly one checkpoint (NAME{WEIGHTS_SUFFIX} with "
            f"NAME{METADATA_SUFFIX}); found {found}"
        )
    return weights[0]


class ModelRepository:
    """Where models come from: a directory tree, or one checkpoint file."""

    def __init__(self, root: Path | None = None, *, checkpoint: Path | None = None) -> None:
        if (root is None) == (checkpoint is None):
            raise ValueError("a repository is a directory or a single checkpoint")
        self.root = root
        self.checkpoint = checkpoint

    @classmethod
    def configured(cls, root: Path | None, checkpoint: Path) -> ModelRepository:
        """The deployment's repository: the directory where one is configured
        (VERACITY_MODEL_REPOSITORY), else the one checkpoint (VERACITY_CHECKPOINT)."""
        return cls(root) if root is not None else cls(checkpoint=checkpoint)

    def describe(self) -> str:
        return str(self.root if self.root is not None else self.checkpoint)

    def public(self, text: str) -> str:
        """``text`` with the server's paths made relative to the repository (to the
        checkpoint's folder without one): what clients may see of the file system."""
        if self.root is not None:
            base, label = self.root, "the model repository"
        else:
            assert self.checkpoint is not None
            base, label = self.checkpoint.parent, "the checkpoint's folder"
        forms = {str(base.absolute()), str(base.resolve())}
        for form in sorted((f for f in forms if len(f) > 1), key=len, reverse=True):
            text = text.replace(form + os.sep, "").replace(form, label)
        return text

    def scan(self) -> tuple[list[ModelVersion], list[Problem]]:
        """Every version found, and every directory that is not a usable version.

        Raises:
            CheckpointError: the repository itself is missing, or (single checkpoint) the
                checkpoint is unreadable.
        """
        if self.checkpoint is not None:
            metadata = read_metadata(self.checkpoint)
            return [read_version(metadata.model_name, metadata.model_version, self.checkpoint)], []
        assert self.root is not None
        if not self.root.is_dir():
            raise CheckpointError(
                f"model repository {self.root} is not a directory; create NAME/VERSION/ "
                "folders holding one checkpoint each (see README, 'Model repository')"
            )
        found: list[ModelVersion] = []
        problems: list[Problem] = []
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if model_dir.name.startswith("."):
                continue
            for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
                if version_dir.name.startswith("."):
                    continue
                name, version = model_dir.name, version_dir.name
                if not (_NAME.match(name) and _NAME.match(version)):
                    problems.append(
                        Problem(
                            name,
                            version,
                            "names and versions are letters, digits, '_', '.' and '-' (at "
                            "most 64, starting with a letter or digit)",
                        )
                    )
                    continue
                try:
                    found.append(read_version(name, version, _checkpoint_in(version_dir)))
                except CheckpointError as e:
                    problems.append(Problem(name, version, e.message))
        return found, problems

    def find(self, name: str, version: str) -> ModelVersion:
        """Read one version from disk again (it may have been added after start-up).

        Raises:
            ModelNotFoundError: no such directory (or not the one checkpoint served).
            CheckpointError: there, but not a usable checkpoint.
        """
        if self.checkpoint is not None:
            (only,), _ = self.scan()
            if only.key != (name, version):
                raise ModelNotFoundError(f"this deployment serves only {only.name}/{only.version}")
            return only
        assert self.root is not None
        if not (_NAME.match(name) and _NAME.match(version)):
            raise ModelNotFoundError(f"{name!r}/{version!r} is not a model name and version")
        directory = self.root / name / version
        if not directory.is_dir():
            raise ModelNotFoundError(
                f"the model repository has no {name}/{version}; GET /models lists what it has"
            )
        return read_version(name, version, _checkpoint_in(directory))
