import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_ARCH, write_tiny_checkpoint
from veracity.checkpoint import (
    CheckpointPaths,
    file_sha256,
    load_checkpoint,
    read_legacy_state_dict,
    read_metadata,
)
from veracity.cli import main
from veracity.errors import CheckpointError
from veracity.models import create_classifier


@pytest.fixture
def checkpoint(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    """A private copy each test may damage."""
    paths = CheckpointPaths.resolve(tiny_checkpoint)
    for source in (paths.weights, paths.metadata):
        shutil.copy(source, tmp_path / source.name)
    return tmp_path / paths.weights.name


def edit_metadata(weights: Path, **changes) -> None:
    path = CheckpointPaths.resolve(weights).metadata
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_round_trip_restores_identical_outputs(tmp_path: Path) -> None:
    path = write_tiny_checkpoint(tmp_path / "model.safetensors", seed=3)
    torch.manual_seed(3)
    original = create_classifier(TINY_ARCH).eval()
    loaded = load_checkpoint(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), original(x), rtol=0, atol=0)
    meta = loaded.metadata
    assert meta.architecture == TINY_ARCH
    assert meta.class_names == ("real", "fake")
    assert meta.preprocess.input_size == (3, 64, 64)
    assert meta.weights_sha256 == file_sha256(path)
    assert meta.model_name == "tiny"
    assert meta.metrics == {"val_accuracy": 0.5}
    assert not loaded.model.training
    for written in (path, path.with_suffix(".json")):
        assert written.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("name", ["model.safetensors", "model.json", "model"])
def test_any_of_the_pair_names_the_checkpoint(tmp_path: Path, name: str) -> None:
    write_tiny_checkpoint(tmp_path / "model.safetensors")
    assert load_checkpoint(tmp_path / name).metadata.architecture == TINY_ARCH


def test_wrong_architecture_is_named(checkpoint: Path) -> None:
    edit_metadata(checkpoint, architecture="test_resnet")
    with pytest.raises(CheckpointError, match="do not match architecture 'test_resnet'"):
        load_checkpoint(checkpoint)


def test_unknown_architecture_is_named(checkpoint: Path) -> None:
    edit_metadata(checkpoint, architecture="no_such_net")
    with pytest.raises(CheckpointError, match="unknown architecture 'no_such_net'"):
        load_checkpoint(checkpoint)


def test_wrong_class_count_is_refused(checkpoint: Path) -> None:
    edit_metadata(checkpoint, class_names=["real", "fake", "other"])
    with pytest.raises(CheckpointError, match=r"classes \['real', 'fake', 'other'\] do not match"):
        load_checkpoint(checkpoint)


def test_swapped_class_order_is_refused(checkpoint: Path) -> None:
    edit_metadata(checkpoint, class_names=["fake", "real"])
    with pytest.raises(CheckpointError, match="order both matter"):
        load_checkpoint(checkpoint)


def test_tampered_weights_fail_the_hash_check(checkpoint: Path) -> None:
    data = bytearray(checkpoint.read_bytes())
    data[-1] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"SHA-256 .* weights were modified"):
        load_checkpoint(checkpoint)


def test_weights_of_another_model_with_a_consistent_hash_are_refused(checkpoint: Path) -> None:
    from safetensors.torch import save_file

    other = create_classifier("test_resnet").state_dict()
    save_file({k: v.contiguous() for k, v in other.items()}, str(checkpoint))
    edit_metadata(checkpoint, weights_sha256=file_sha256(checkpoint))
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_checkpoint(checkpoint)


def test_missing_metadata_file_is_explained(checkpoint: Path) -> None:
    CheckpointPaths.resolve(checkpoint).metadata.unlink()
    with pytest.raises(CheckpointError, match=r"metadata file .*tiny.json not found"):
        load_checkpoint(checkpoint)


def test_missing_weights_file_is_explained(checkpoint: Path) -> None:
    checkpoint.unlink()
    with pytest.raises(CheckpointError, match=r"weights file .* not found"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weights_sha256": None}, "weights_sha256: Field required"),
        ({"preprocess": None}, "preprocess: Field required"),
        ({"weights_sha256": "abc"}, "weights_sha256: String should match pattern"),
        ({"format_version": 3}, "format_version: Input should be 1 or 2"),
        ({"unexpected": 1}, "unexpected: Extra inputs are not permitted"),
    ],
)
def test_invalid_metadata_fields_are_named(checkpoint: Path, change: dict, message: str) -> None:
    edit_metadata(checkpoint, **change)
    with pytest.raises(CheckpointError, match=message):
        read_metadata(checkpoint)


def test_metadata_that_is_not_json_is_explained(checkpoint: Path) -> None:
    CheckpointPaths.resolve(checkpoint).metadata.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(checkpoint)


def test_weights_that_are_not_safetensors_are_explained(checkpoint: Path) -> None:
    checkpoint.write_bytes(b"\x00" * 64)
    edit_metadata(checkpoint, weights_sha256=file_sha256(checkpoint))
    with pytest.raises(CheckpointError, match="not valid safetensors"):
        load_checkpoint(checkpoint)


def test_loading_a_pth_directly_points_to_the_conversion_command(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="veracity convert-legacy"):
        load_checkpoint(tmp_path / "debug.pth")


class Exploit:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_legacy_conversion_round_trip(tmp_path: Path, capsys) -> None:
    torch.manual_seed(5)
    model = create_classifier(TINY_ARCH)
    legacy = tmp_path / "debug.pth"
    # What an older DataParallel training script saved: prefixed keys inside a wrapper.
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, legacy)
    out = tmp_path / "converted.safetensors"
    assert (
        main(
            [
                "convert-legacy",
                str(legacy),
                "--arch",
                TINY_ARCH,
                "--image-size",
                "64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    loaded = load_checkpoint(out)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model.eval()(x), rtol=0, atol=0)
    assert loaded.metadata.training["converted_from"] == str(legacy)
    assert json.loads(capsys.readouterr().out)["weights_sha256"] == loaded.metadata.weights_sha256


def test_legacy_file_with_arbitrary_pickled_objects_is_refused(tmp_path: Path, capsys) -> None:
    legacy = tmp_path / "evil.pth"
    with legacy.open("wb") as f:
        pickle.dump({"weight": Exploit()}, f)
    with pytest.raises(CheckpointError, match="weights_only=True refused"):
        read_legacy_state_dict(legacy)
    assert "code ran" not in capsys.readouterr().out


def test_legacy_file_for_another_architecture_is_refused(tmp_path: Path, capsys) -> None:
    legacy = tmp_path / "resnet.pth"
    torch.save(create_classifier("test_resnet").state_dict(), legacy)
    code = main(["convert-legacy", str(legacy), "--arch", TINY_ARCH, "--out", str(tmp_path / "x")])
    assert code == 2
    assert "do not match architecture 'test_efficientnet'" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_legacy_file_that_is_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    legacy = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], legacy)
    with pytest.raises(CheckpointError, match="state dict of named tensors"):
        read_legacy_state_dict(legacy)
