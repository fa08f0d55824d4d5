"""Security floors for the libraries that parse what clients send.

No vulnerability database is reachable from the build machines, so the minimum safe
versions are kept here, each with the advisory it clears, and checked against both the
exact pins (requirements.txt), the declared ranges (pyproject.toml) and what is installed.
Raise a floor when a new advisory lands; never lower one.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

FLOORS: dict[str, tuple[str, str]] = {
    # Parses every upload body.
    "python-multipart": (
        "0.0.31",
        "GHSA-v9pg-7xvm-68hf (negative Content-Length buffers the body, 0.0.31); "
        "CVE-2026-42561 (excessive part headers); CVE-2024-53981 (CRLF preamble, 0.0.18)",
    ),
    # Routing, form parsing, static files (Swagger UI assets).
    "starlette": (
        "1.6.0",
        "CVE-2026-54282, CVE-2026-54283; CVE-2026-48710 (Host header poisons the path, "
        "1.0.1); CVE-2025-54121 (multipart rollover blocks the loop, 0.47.2)",
    ),
    # Decodes every image.
    "pillow": (
        "12.3.0",
        "decompression-bomb check bypasses and heap overflows fixed in 12.3.0 "
        "(CVE-2026-55380, CVE-2026-59199, CVE-2026-59204, ...); CVE-2026-40192 (FITS, 12.2.0)",
    ),
    # Loads legacy .pth checkpoints (weights_only).
    "torch": (
        "2.10.0",
        "CVE-2026-24747 (untrusted checkpoint RCE); CVE-2025-32434 (weights_only RCE, 2.6.0)",
    ),
}


def pinned() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{line}: runtime pins must be exact"
            pins[requirement.name.lower()] = Version(spec.version)
    return pins


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(d).name.lower(): Requirement(d) for d in project["dependencies"]}


@pytest.mark.parametrize("package", list(FLOORS))
def test_pinned_installed_and_declared_versions_clear_the_floor(package: str) -> None:
    floor, advisories = FLOORS[package]
    assert pinned()[package] >= Version(floor), f"{package} pin is below {floor}: {advisories}"
    installed = Version(re.sub(r"\+.*", "", version(package)))
    assert installed >= Version(floor), f"installed {package} is below {floor}: {advisories}"
    # The declared range must not admit a vulnerable release either.
    lower_bounds = [Version(s.version) for s in declared()[package].specifier if s.operator == ">="]
    assert lower_bounds, f"pyproject.toml declares no lower bound for {package}"
    assert max(lower_bounds) >= Version(floor), f"pyproject.toml admits {package} below {floor}"
