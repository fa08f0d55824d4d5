"""What a scan reads: every file under a folder (in a stable order: names sorted, folder by
folder), the paths and URIs a manifest lists, or one file. Listed lazily, so an archive of
any size costs memory for one folder's names at a time.

A location is a local ``Path``, or a URI kept as text (``s3://bucket/key``,
``gs://...``, ``hdfs://...``, ``file:///...``: whatever PyArrow's file systems read,
PyArrow coming with the ``ray`` extra), so that a manifest can name an object store the
cluster's workers can read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from veracity.errors import DatasetError
from veracity.video.container import detect_container

# The first bytes of common image formats (videos: detect_container, which also takes
# HEIF's ISO boxes): a target file that starts with one of them is scanned itself (and
# refused there if the service does not accept its format), anything else is read as a
# manifest.
_IMAGE_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG",
    b"RIFF",  # WebP
    b"GIF8",
    b"II*\x00",  # TIFF
    b"MM\x00*",
    b"BM",
)


Location = Path | str  # a local file, or a URI

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def as_location(text: str) -> Location:
    """A URI as it is, anything else as a local path."""
    return text if _URI.match(text) else Path(text)


def list_inputs(target: Path) -> Iterator[Location]:
    """The files ``target`` names: a folder's, recursively; a manifest's (one path per line,
    relative to the manifest's folder, or a URI; blank lines and lines starting with #
    skipped); or ``target`` itself when it is an image or a video.

    Raises:
        DatasetError: ``target`` does not exist or cannot be read.
    """
    if target.is_dir():
        return _walk(target)
    if not target.is_file():
        raise DatasetError(f"{target}: no such file or folder")
    if _is_media(target):
        return iter([target])
    return _manifest(target)


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()  # os.walk descends in this order
        for name in sorted(files):
            yield Path(folder) / name


def _is_media(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as e:
        raise DatasetError(f"{path}: {e.strerror}") from e
    return head.startswith(_IMAGE_SIGNATURES) or detect_container(head) is not None


def _manifest(path: Path) -> Iterator[Location]:
    base = path.parent
    try:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    yield entry if _URI.match(entry) else base / entry
    except UnicodeDecodeError as e:
        raise DatasetError(
            f"{path} is neither an image, a video nor a manifest (one path per line, UTF-8)"
        ) from e
    except OSError as e:
        raise DatasetError(f"{path}: {e.strerror}") from e
