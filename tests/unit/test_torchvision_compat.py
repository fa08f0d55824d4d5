import subprocess
import sys
from pathlib import Path

import torch

from veracity import _torchvision_compat as compat


def test_timm_and_torchvision_import_in_a_fresh_interpreter() -> None:
    # A fresh process is the only honest check: in this one timm is already imported.
    code = (
        "import veracity.models, torchvision, timm; "
        "print(timm.create_model('test_resnet').__class__.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ResNet"


def test_bare_torchvision_import_fails_only_when_native_ops_are_missing() -> None:
    # Documents the upstream problem the compat module exists for, on whichever build is
    # installed: either torchvision imports on its own, or its native library does not load.
    code = "import torchvision"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    spec_dir = Path(torch.__file__).parent.parent / "torchvision"
    if result.returncode != 0:
        assert "torchvision::nms does not exist" in result.stderr
        assert not compat._native_ops_load(spec_dir)


def test_missing_native_library_is_reported_as_not_loadable(tmp_path: Path) -> None:
    assert compat._native_library(tmp_path) is None
    assert compat._native_ops_load(tmp_path) is False
    (tmp_path / "_C.so").write_bytes(b"not an ELF file")
    assert compat._native_ops_load(tmp_path) is False


def test_nothing_is_defined_when_torchvision_is_absent(monkeypatch) -> None:
    monkeypatch.setattr(compat.importlib.util, "find_spec", lambda name: None)
    assert compat.ensure_torchvision_importable.__wrapped__() is None


def test_is_idempotent_and_leaves_nms_defined() -> None:
    first = compat.ensure_torchvision_importable()
    assert compat.ensure_torchvision_importable() is first
    assert hasattr(torch.ops.torchvision, "nms")
    assert hasattr(torch.ops.torchvision, "qnms")
