"""The committed demo checkpoint is the real-photo model `make demo-model` builds, and on the
held-out sample it never says `fake` about a real photograph.

The goals are measured on every held-out photograph by `veracity evaluate --heldout`
(README, "The demo model"); here the CI sample that `make test` fetches is enough to check
the safety goals, which must hold on any sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_CHECKPOINT, REPO_ROOT
from veracity.checkpoint import load_checkpoint
from veracity.corpus.manifest import HELD_OUT_SOURCES

pytestmark = pytest.mark.slow

HELDOUT_DIR = REPO_ROOT / "data" / "heldout"


def test_the_demo_is_the_real_photo_model_and_names_what_it_was_trained_on() -> None:
    checkpoint = load_checkpoint(DEMO_CHECKPOINT)
    assert DEMO_CHECKPOINT.stat().st_size < 25 * 1024 * 1024
    meta = checkpoint.metadata
    assert (meta.model_name, meta.model_version) == ("veracity-demo", "3.1.0")
    assert meta.architecture == "tf_efficientnet_lite0"
    preprocess = meta.preprocess
    assert (preprocess.mode, preprocess.patch_grid, preprocess.patch_pooling) == (
        "patches",
        4,
        "max",
    )
    # The 4x4 grid of 256 px patches tiles a 1024 px side: the explanation reads every cell.
    assert preprocess.max_side == 4 * preprocess.input_size[1] == 1024
    corpus = meta.training["corpus"]
    sources = set(corpus["sources"]["train"]) | set(corpus["sources"]["validate"])
    assert not sources & HELD_OUT_SOURCES
    assert not set(corpus["sources"]["train"]) & set(corpus["sources"]["validate"])
    assert corpus["edit_kinds"]["train"].get("self_blend", 0) > 0
    calibration = meta.calibration
    assert calibration is not None
    assert checkpoint.reference is not None
    assert "validate split" in calibration.data


def test_predict_finds_the_demo_model_from_another_directory(tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "upload.png"
    Image.new("RGB", (320, 240), (90, 140, 60)).save(image)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERACITY_")}
    completed = subprocess.run(
        [sys.executable, "-m", "veracity", "predict", "--device", "cpu", image.name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    line = json.loads(completed.stdout)
    assert line["calibrated"] is True
    # A flat colour holds nothing to judge: never a confident answer.
    assert line["verdict"] == "inconclusive"
    assert "no_content" in {reason["code"] for reason in line["reasons"]}
