"""The committed list of the real-photo corpus: every file, where it comes from, its digest.

The manifest is a tab-separated file shipped inside this package (``manifest.tsv``), so
``veracity fetch-corpus`` finds it from any working directory and an installed copy reads
the list that matches its code. Lines starting with ``#`` are comments; the first other
line is the header naming the columns below.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from veracity.errors import VeracityError

COLUMNS = (
    "source",
    "registry",
    "artifact",
    "version",
    "licence",
    "split",
    "role",
    "path",
    "member",
    "sha256",
    "bytes",
    "original",
)
REGISTRIES = {"debian": ("deb",), "pypi": ("wheel", "sdist")}
# The splits training may read. The held-out photographs (``heldout.tsv``, split "heldout")
# are not among them, so a training builder asked for that split refuses it.
SPLITS = ("train", "validate")
ROLES = ("real_photo", "real_video", "fake_with_original")
NONE = "-"

# How the product is judged (DEVELOPERS.md): never trained, tuned or calibrated on. The
# Python libraries are held out for their sample photographs; nothing of theirs belongs here.
HELD_OUT_SOURCES = frozenset(
    {
        "mate-backgrounds",
        "plasma-workspace-wallpapers",
        "gnome-backgrounds",
        "lomiri-wallpapers-20.04",
        "scikit-image",
        "scikit-learn",
        "matplotlib",
    }
)


class CorpusError(VeracityError):
    """The corpus or its manifest is not what the manifest promises."""

    status_code = 422
    code = "corpus_invalid"


@dataclass(frozen=True)
class CorpusEntry:
    """One file of the corpus.

    ``path`` is the file inside the package; ``member`` the file inside the Qt resource
    bundle at ``path`` (GCompris), else None. ``original`` names, for a fake, the local path
    of the real image it was made from.
    """

    source: str
    registry: str
    artifact: str
    version: str
    licence: str
    split: str
    role: str
    path: str
    member: str | None
    sha256: str
    size: int
    original: str | None

    @property
    def local_path(self) -> str:
        """Where the file lies under the corpus directory: ``SOURCE/path-in-package``."""
        return f"{self.source}/{self.member or self.path}"


def default_manifest() -> Path:
    """The manifest shipped with this package."""
    return Path(str(resources.files("veracity.corpus").joinpath("manifest.tsv")))


def read_manifest(path: Path | None = None) -> list[CorpusEntry]:
    """The manifest's entries, checked (see ``check_entries``).

    Raises:
        CorpusError: The file is missing, malformed or breaks one of the corpus rules.
    """
    path = path or default_manifest()
    rows = read_rows(path, COLUMNS)
    entries = [parse_entry(row, path, number) for number, row in rows]
    check_entries(entries)
    return entries


def read_rows(path: Path, columns: Sequence[str]) -> list[tuple[int, list[str]]]:
    """The rows below the header of a tab-separated manifest, each with its line's number
    among the non-comment lines (the header is 1).

    Raises:
        CorpusError: The file cannot be read, or its header is not ``columns``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CorpusError(f"cannot read the corpus manifest {path}: {e}") from e
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    rows = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or tuple(rows[0]) != tuple(columns):
        raise CorpusError(f"{path}: the header must be the columns {', '.join(columns)}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(columns):
            raise CorpusError(f"{path}: row {number} has {len(row)} fields, not {len(columns)}")
    return list(enumerate(rows[1:], start=2))


def parse_entry(
    row: Sequence[str], path: Path, number: int, *, splits: Sequence[str] = SPLITS
) -> CorpusEntry:
    """One row's first ``COLUMNS`` as an entry, its fields checked; the split must be one
    of ``splits`` (the training manifest's by default)."""
    f = dict(zip(COLUMNS, row[: len(COLUMNS)], strict=True))
    where = f"{path}: row {number} ({f['source']} {f['path']})"
    if f["registry"] not in REGISTRIES or f["artifact"] not in REGISTRIES[f["registry"]]:
        raise CorpusError(f"{where}: unknown registry/artifact {f['registry']}/{f['artifact']}")
    if f["split"] not in splits:
        raise CorpusError(f"{where}: split must be one of {', '.join(splits)}")
    if f["role"] not in ROLES:
        raise CorpusError(f"{where}: role must be one of {', '.join(ROLES)}")
    digest = f["sha256"].lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise CorpusError(f"{where}: sha256 is not 64 hex digits")
    if not f["bytes"].isdigit():
        raise CorpusError(f"{where}: bytes is not a size")
    for column in ("source", "version", "licence", "path"):
        if not f[column] or f[column] == NONE:
            raise CorpusError(f"{where}: {column} is empty")
    member = None if f["member"] == NONE else f["member"]
    original = None if f["original"] == NONE else f["original"]
    for name in (f["path"], member):
        if name is not None and not _safe_relative(name):
            raise CorpusError(f"{where}: {name!r} is not a plain relative path")
    return CorpusEntry(
        source=f["source"],
        registry=f["registry"],
        artifact=f["artifact"],
        version=f["version"],
        licence=f["licence"],
        split=f["split"],
        role=f["role"],
        path=f["path"],
        member=member,
        sha256=digest,
        size=int(f["bytes"]),
        original=original,
    )


def _safe_relative(name: str) -> bool:
    pure = PurePosixPath(name)
    return not pure.is_absolute() and ".." not in pure.parts and name == str(pure)


def check_entries(entries: Iterable[CorpusEntry]) -> None:
    """The rules every manifest keeps.

    No held-out source; one split, registry, artifact and version per source (the split is
    by source, so no package feeds both training and validation); each local path once; a
    fake names an original that is a real photo of the same source, and only a fake does.

    Raises:
        CorpusError: The first rule broken, with the entry that breaks it.
    """
    entries = list(entries)
    by_source: dict[str, tuple[str, str, str, str]] = {}
    by_local: dict[str, CorpusEntry] = {}
    for entry in entries:
        if entry.source in HELD_OUT_SOURCES:
            raise CorpusError(f"{entry.source} is held out for evaluation: never in the corpus")
        key = (entry.split, entry.registry, entry.artifact, entry.version)
        if by_source.setdefault(entry.source, key) != key:
            raise CorpusError(
                f"{entry.source}: every file of a source must share one split, registry, "
                f"artifact and version ({by_source[entry.source]} vs {key})"
            )
        if entry.local_path in by_local:
            raise CorpusError(f"{entry.local_path} is listed twice")
        by_local[entry.local_path] = entry
    for entry in entries:
        if (entry.role == "fake_with_original") != (entry.original is not None):
            raise CorpusError(f"{entry.local_path}: only a fake names an original, and it must")
        if entry.original is not None:
            original = by_local.get(entry.original)
            if original is None or original.role != "real_photo":
                raise CorpusError(
                    f"{entry.local_path}: its original {entry.original} is not a real photo "
                    "listed in the manifest"
                )
            if original.source != entry.source:
                raise CorpusError(f"{entry.local_path}: its original comes from another source")
