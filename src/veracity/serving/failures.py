"""Versions that failed to load, remembered so that asking again is cheap and visible.

A load verifies the weights' SHA-256, so each attempt on a corrupt version reads the whole
file. Any key that may name a version could otherwise make a replica hash it again and
again; instead a failure is kept, with the size and modification time of the version's
files, and a repeat within the cool-down answers the recorded failure without touching the
weights. Changing the files (copying a fixed version in) ends the cool-down at once. The
record also lets GET /models show the version as failed, with the reason, until it loads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from veracity.checkpoint import CheckpointPaths
from veracity.repository.layout import ModelVersion

Key = tuple[str, str]
Fingerprint = tuple[tuple[str, int, int] | None, ...]


def fingerprint(version: ModelVersion) -> Fingerprint:
    """Name, size and mtime of the version's files (None for one that is absent)."""
    paths = CheckpointPaths.resolve(version.checkpoint)
    stamps: list[tuple[str, int, int] | None] = []
    for path in (paths.weights, paths.metadata, paths.calibration, paths.drift_profile):
        try:
            stat = path.stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


@dataclass(frozen=True)
class LoadFailure:
    reason: str  # as clients may see it (paths relative to the repository)
    files: Fingerprint
    at: float  # time.monotonic()


class LoadFailures:
    def __init__(self, cooldown_s: float) -> None:
        self.cooldown_s = cooldown_s
        self._failures: dict[Key, LoadFailure] = {}

    def record(self, version: ModelVersion, reason: str) -> None:
        self._failures[version.key] = LoadFailure(reason, fingerprint(version), time.monotonic())

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    def recent(self, version: ModelVersion) -> tuple[LoadFailure, float] | None:
        """The failure recorded for these very files within the cool-down, and its age."""
        failure = self._failures.get(version.key)
        if failure is None:
            return None
        age = time.monotonic() - failure.at
        if age >= self.cooldown_s or failure.files != fingerprint(version):
            return None
        return failure, age

    def current(self, version: ModelVersion) -> LoadFailure | None:
        """The failure recorded for the version's files as they are now (any age)."""
        failure = self._failures.get(version.key)
        if failure is not None and failure.files != fingerprint(version):
            self._failures.pop(version.key, None)
            return None
        return failure
