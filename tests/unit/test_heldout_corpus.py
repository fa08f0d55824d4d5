"""The held-out list: only held-out sources, never readable by training, fetched and checked
by the corpus's own code.

No network: packages are served by a fake downloader, as in test_corpus.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from veracity.cli import main
from veracity.corpus.fetch import fetch_corpus
from veracity.corpus.heldout import (
    HELDOUT_COLUMNS,
    HELDOUT_SPLIT,
    default_heldout_manifest,
    read_heldout_manifest,
)
from veracity.corpus.manifest import HELD_OUT_SOURCES, SPLITS, CorpusError, read_manifest
from veracity.corpus.packages import FileReader, Package
from veracity.training.pairs import build_pair_dataset

PHOTO = b"\xff\xd8\xff\xe0 a held-out photo" + bytes(range(256))
OTHER = b"\x89PNG\r\n\x1a\n another one" + bytes(range(255, -1, -1))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def heldout_row(path: str, data: bytes, **fields: str) -> str:
    values = {
        "source": "mate-backgrounds",
        "registry": "debian",
        "artifact": "deb",
        "version": "1.26.0-1",
        "licence": "GPL-2+",
        "split": HELDOUT_SPLIT,
        "role": "real_photo",
        "path": path,
        "member": "-",
        "sha256": sha(data),
        "bytes": str(len(data)),
        "original": "-",
        "sample": "ci",
        "shows": "a flower",
        **fields,
    }
    return "\t".join(values[c] for c in HELDOUT_COLUMNS)


def write_list(path: Path, rows: list[str]) -> Path:
    path.write_text("# held out\n" + "\t".join(HELDOUT_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return path


def test_every_shipped_held_out_photo_comes_from_a_held_out_source() -> None:
    photos = read_heldout_manifest()

    assert {p.source for p in photos} <= HELD_OUT_SOURCES
    assert {p.entry.split for p in photos} == {HELDOUT_SPLIT}
    assert HELDOUT_SPLIT not in SPLITS
    assert len(photos) >= 40
    assert all(p.shows and p.entry.licence and p.entry.version for p in photos)
    # Every held-out package with photographs is listed (gnome-backgrounds 43.1 has none).
    assert {p.source for p in photos} == HELD_OUT_SOURCES - {"gnome-backgrounds"}


def test_the_ci_sample_is_small_and_part_of_the_list() -> None:
    everything = {p.entry.local_path for p in read_heldout_manifest()}
    sample = read_heldout_manifest(sample=True)

    assert 3 <= len(sample) <= 10
    assert {p.entry.local_path for p in sample} <= everything
    assert len({p.source for p in sample}) >= 3
    # Only the smaller packages: the large wallpaper packages stay out of `make test`.
    assert not {p.source for p in sample} & {"plasma-workspace-wallpapers", "mate-backgrounds"}


def test_no_held_out_source_or_file_is_in_the_training_manifest() -> None:
    training = read_manifest()
    held_out = read_heldout_manifest()

    assert not {e.source for e in training} & HELD_OUT_SOURCES
    # Nor the same bytes under another package's name.
    assert not {e.sha256 for e in training} & {p.entry.sha256 for p in held_out}


def test_the_training_manifest_reader_refuses_the_held_out_list() -> None:
    with pytest.raises(CorpusError, match="header"):
        read_manifest(default_heldout_manifest())


def test_the_training_pair_builder_refuses_the_held_out_split(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="split must be one of train, validate"):
        build_pair_dataset(tmp_path, HELDOUT_SPLIT)
    with pytest.raises(CorpusError, match="header"):
        build_pair_dataset(tmp_path, "validate", manifest=default_heldout_manifest())


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"source": "opencv-doc"}, "not a held-out source"),
        ({"split": "train"}, "split must be one of heldout"),
        ({"split": "validate"}, "split must be one of heldout"),
        ({"role": "real_video"}, "only plain files of real photographs"),
        ({"sample": "yes"}, "sample must be ci or -"),
        ({"shows": "-"}, "say what the photograph shows"),
    ],
)
def test_a_held_out_list_breaking_a_rule_is_refused(
    tmp_path: Path, fields: dict[str, str], reason: str
) -> None:
    rows = [heldout_row("usr/share/a.jpg", PHOTO), heldout_row("usr/share/b.png", OTHER, **fields)]
    with pytest.raises(CorpusError, match=reason):
        read_heldout_manifest(write_list(tmp_path / "heldout.tsv", rows))


def test_held_out_files_are_fetched_checked_and_a_changed_one_refused(tmp_path: Path) -> None:
    rows = [
        heldout_row("usr/share/a.jpg", PHOTO),
        heldout_row("usr/share/b.png", OTHER, sample="-"),
    ]
    listed = write_list(tmp_path / "heldout.tsv", rows)
    served = {"usr/share/a.jpg": PHOTO, "usr/share/b.png": OTHER[:-1] + b"!"}
    downloads: list[Package] = []

    def downloader(package: Package, into: Path) -> FileReader:
        downloads.append(package)
        return served.get

    root = tmp_path / "heldout"
    entries = [p.entry for p in read_heldout_manifest(listed)]
    (summary,) = fetch_corpus(entries, root, downloader=downloader)

    assert downloads == [Package("mate-backgrounds", "1.26.0-1", "debian", "deb")]
    assert (root / "mate-backgrounds/usr/share/a.jpg").read_bytes() == PHOTO
    assert not (root / "mate-backgrounds/usr/share/b.png").exists()
    assert summary.fetched == 1
    assert len(summary.refused) == 1
    assert "differs from the manifest" in summary.refused[0]
    assert [p.entry.path for p in read_heldout_manifest(listed, sample=True)] == ["usr/share/a.jpg"]


def test_fetch_corpus_takes_sample_only_with_heldout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch-corpus", "--sample", "--check"]) == 2
    assert "use it with --heldout" in capsys.readouterr().err
