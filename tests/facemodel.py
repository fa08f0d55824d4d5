"""The face detector's model file for tests: `make test` fetches it (`make face-detector`).

A test that runs the detector is skipped, saying why, only where the file is absent outside
CI; in CI (the ``CI`` variable set) it runs and fails without the file rather than passing
silently.
"""

from __future__ import annotations

import os

import pytest

from veracity.faces.fetch import default_model_path

FACE_MODEL = default_model_path()

requires_face_model = pytest.mark.skipif(
    not FACE_MODEL.is_file() and not os.environ.get("CI"),
    reason=f"{FACE_MODEL} absent: `make face-detector` fetches it",
)
