"""The held-out photographs: the list the product is judged on, never trained on.

``heldout.tsv`` has the corpus manifest's columns and two more: ``sample`` (``ci`` marks the
small sample the test suite fetches, ``-`` otherwise) and ``shows`` (what the photograph
shows, as it was looked at). Its split is always ``heldout``, which is not one of the
training splits (``manifest.SPLITS``): the training pair builder refuses it, and
``read_manifest`` refuses this file. It is fetched and checked by the same code as the
corpus (``veracity fetch-corpus --heldout``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from veracity.corpus.manifest import (
    COLUMNS,
    HELD_OUT_SOURCES,
    CorpusEntry,
    CorpusError,
    parse_entry,
    read_rows,
)

HELDOUT_SPLIT = "heldout"
HELDOUT_COLUMNS = (*COLUMNS, "sample", "shows")
SAMPLE_MARK = "ci"


@dataclass(frozen=True)
class HeldOutPhoto:
    """One held-out photograph: its manifest entry, whether the CI sample holds it, and
    what it shows."""

    entry: CorpusEntry
    in_sample: bool
    shows: str

    @property
    def source(self) -> str:
        return self.entry.source


def default_heldout_manifest() -> Path:
    """The held-out list shipped with this package."""
    return Path(str(resources.files("veracity.corpus").joinpath("heldout.tsv")))


def read_heldout_manifest(path: Path | None = None, *, sample: bool = False) -> list[HeldOutPhoto]:
    """The held-out photographs (only the CI sample's with ``sample``), checked.

    Raises:
        CorpusError: The file is missing or malformed, or an entry breaks a rule of
            ``check_heldout``.
    """
    path = path or default_heldout_manifest()
    photos = []
    for number, row in read_rows(path, HELDOUT_COLUMNS):
        entry = parse_entry(row, path, number, splits=(HELDOUT_SPLIT,))
        mark, shows = row[len(COLUMNS)], row[len(COLUMNS) + 1].strip()
        if mark not in (SAMPLE_MARK, "-"):
            raise CorpusError(f"{path}: row {number}: sample must be {SAMPLE_MARK} or -")
        if not shows or shows == "-":
            raise CorpusError(f"{path}: row {number}: say what the photograph shows")
        photos.append(HeldOutPhoto(entry, mark == SAMPLE_MARK, shows))
    check_heldout(photos)
    return [p for p in photos if p.in_sample] if sample else photos


def check_heldout(photos: Iterable[HeldOutPhoto]) -> None:
    """The rules the held-out list keeps: every source held out, photographs only, one
    registry, artifact and version per source, each file once, a CI sample.

    Raises:
        CorpusError: The first rule broken, with the entry that breaks it.
    """
    versions: dict[str, tuple[str, str, str]] = {}
    seen: set[str] = set()
    count = sampled = 0
    for photo in photos:
        entry = photo.entry
        count += 1
        sampled += photo.in_sample
        if entry.source not in HELD_OUT_SOURCES:
            raise CorpusError(
                f"{entry.local_path}: {entry.source} is not a held-out source; only "
                f"{', '.join(sorted(HELD_OUT_SOURCES))} may be listed"
            )
        if entry.role != "real_photo" or entry.original is not None or entry.member is not None:
            raise CorpusError(f"{entry.local_path}: only plain files of real photographs")
        key = (entry.registry, entry.artifact, entry.version)
        if versions.setdefault(entry.source, key) != key:
            raise CorpusError(f"{entry.source}: one registry, artifact and version per source")
        if entry.local_path in seen:
            raise CorpusError(f"{entry.local_path} is listed twice")
        seen.add(entry.local_path)
    if count == 0 or sampled == 0:
        raise CorpusError("the held-out list and its CI sample must not be empty")
