"""Uploaded bytes kept beside the store when a deployment asks for it
(VERACITY_STORE_INPUTS): content-addressed files, ``<data dir>/inputs/ab/abcdef...`` by
SHA-256, written atomically, removed after the retention period (counted from the last
upload of the same bytes) or when the last prediction that refers to them is erased.

The same bytes uploaded twice are one file. With several replicas, the data directory must
be a volume they share for every replica to see every input (DEPLOYMENT.md).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/x-matroska": ".mkv",
}


class InputFiles:
    def __init__(self, root: Path, *, retention_s: float) -> None:
        self.root = root
        self.retention_s = retention_s

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256

    def save(self, sha256: str, data: bytes) -> Path:
        """Write (or, when present, refresh the retention clock of) the file for ``data``."""
        target = self.path(sha256)
        if target.exists():
            os.utime(target)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then renamed: a reader never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(data)
            os.chmod(temporary, 0o600)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def sweep(self, now: float | None = None) -> int:
        """Remove files past the retention period; the number removed."""
        if not self.root.is_dir():
            return 0
        horizon = (time.time() if now is None else now) - self.retention_s
        removed = 0
        for path in self.root.glob("??/*"):
            try:
                if path.stat().st_mtime < horizon:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
