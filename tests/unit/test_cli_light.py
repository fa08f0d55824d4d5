"""The light commands start without the model frameworks: `veracity db` in a container's
init step must not pay for loading torch (seconds, and hundreds of MB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the command as the console script would, then reports what it loaded.
_WRAPPER = """
import json, sys
from veracity.cli import main
code = main(sys.argv[1:])
print(json.dumps({"exit": code, "torch": "torch" in sys.modules}))
"""

HEAVY = ("torch", "timm", "onnxruntime", "torchvision")


def _run(args: list[str], data_dir: Path) -> tuple[int, bool, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERACITY_")}
    env["VERACITY_DATA_DIR"] = str(data_dir)
    completed = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *args],
        cwd=data_dir,  # no ./.env of the checkout is read
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    *printed, report = completed.stdout.strip().splitlines()
    outcome = json.loads(report)
    return outcome["exit"], outcome["torch"], "\n".join(printed)


@pytest.mark.parametrize("existing", [False, True], ids=["no-database", "migrated"])
def test_db_current_does_not_import_torch(tmp_path: Path, existing: bool) -> None:
    if existing:
        code, torch_loaded, _ = _run(["db", "upgrade"], tmp_path)
        assert code == 0
        assert not torch_loaded, "`veracity db upgrade` imported torch"
    code, torch_loaded, printed = _run(["db", "current"], tmp_path)
    assert code == 0
    assert "schema revision" in printed
    assert not torch_loaded, "`veracity db current` imported torch"


def test_settings_import_no_model_framework() -> None:
    probe = (
        "import sys\n"
        "import veracity.settings\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert completed.stdout.strip() == ""
