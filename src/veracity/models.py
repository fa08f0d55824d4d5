"""Everything that touches timm: building classifiers and resolving their data configuration.

This is the only module that imports timm (and, through it, torchvision), so the torchvision
compatibility step runs in exactly one place, before that import.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veracity._torchvision_compat import ensure_torchvision_importable
from veracity.errors import CheckpointError, ConfigurationError
from veracity.preprocess import PreprocessConfig

ensure_torchvision_importable()

import timm  # noqa: E402 - must follow the compatibility step above
import timm.data  # noqa: E402

# The order is part of the contract: output index 0 is "real", index 1 is "fake".
CLASS_NAMES: tuple[str, str] = ("real", "fake")
DEFAULT_ARCHITECTURE = "efficientnet_b0"


def timm_version() -> str:
    return str(timm.__version__)


def create_classifier(
    architecture: str = DEFAULT_ARCHITECTURE,
    *,
    num_classes: int = len(CLASS_NAMES),
    pretrained_file: Path | None = None,
) -> nn.Module:
    """Build a timm classifier with a ``num_classes`` head, never touching the network.

    Args:
        architecture: Any name ``timm.list_models()`` knows.
        num_classes: Size of the classification head.
        pretrained_file: Optional local weights (safetensors, or a PyTorch file read with
            ``weights_only=True``) for the backbone; a head of another size is discarded.

    Raises:
        ConfigurationError: unknown architecture, or a pretrained file that is missing or
            does not fit the architecture.
    """
    if not timm.is_model(architecture):
        raise ConfigurationError(
            f"unknown architecture {architecture!r}; list the valid names with "
            "`python -c 'import timm; print(timm.list_models())'`"
        )
    if pretrained_file is None:
        model: nn.Module = timm.create_model(
            architecture, pretrained=False, num_classes=num_classes
        )
        _zero_init_head(model)
        return model
    if not pretrained_file.is_file():
        raise ConfigurationError(f"pretrained weights file {pretrained_file} does not exist")
    model = timm.create_model(architecture, pretrained=False, num_classes=num_classes)
    _zero_init_head(model)
    _load_backbone(model, pretrained_file, architecture)
    return model


def _load_backbone(model: nn.Module, path: Path, architecture: str) -> None:
    """Load every tensor of ``path`` into ``model``; a head of another size stays new.

    Strict about the backbone: timm's own pretrained loading turns non-strict when the
    class count differs, so a file missing half the backbone would load without a word.
    """
    try:
        # safetensors, or a pickle read with weights_only=True (no unsafe fallback).
        state: dict[str, torch.Tensor] = timm.models.load_state_dict(str(path), weights_only=True)
    except (RuntimeError, ValueError, OSError) as e:
        raise ConfigurationError(f"pretrained weights {path} cannot be read safely: {e}") from e
    expected = model.state_dict()
    head = _head_keys(model, expected)
    head_fits = all(k in state and state[k].shape == expected[k].shape for k in head)
    if not head_fits:
        # ImageNet's 1000-class head gives way to the new one, started at 0.5/0.5.
        state = {k: v for k, v in state.items() if k not in head}
    try:
        check_state_dict_fits(
            model, state, architecture=architecture, may_lack=() if head_fits else head
        )
    except CheckpointError as e:
        raise ConfigurationError(f"pretrained weights {path}: {e.message}") from e
    model.load_state_dict(state, strict=head_fits)


def _head_keys(model: nn.Module, expected: dict[str, torch.Tensor]) -> set[str]:
    config = getattr(model, "pretrained_cfg", None) or {}
    names = config.get("classifier") or ()
    prefixes = tuple(f"{name}." for name in ((names,) if isinstance(names, str) else names))
    return {k for k in expected if prefixes and k.startswith(prefixes)}


def _zero_init_head(model: nn.Module) -> None:
    """Start a new classification head at exactly 0.5/0.5 for every input.

    Several timm families initialise the head with a range scaled by 1/sqrt(num_classes),
    tuned for 1000 classes; with two classes that gives logits of several units and gradient
    norms in the hundreds on the first step, and from-scratch training diverges.
    """
    get_classifier = getattr(model, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else None
    if not isinstance(head, nn.Module):
        return
    for module in head.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def resolve_preprocess_config(
    model: nn.Module, *, image_size: int | None = None
) -> PreprocessConfig:
    """The eval transform timm defines for ``model``, optionally at another square size."""
    overrides: dict[str, Any] = {}
    if image_size is not None:
        overrides["input_size"] = (3, image_size, image_size)
    data_config = timm.data.resolve_data_config(overrides, model=model)
    crop_mode = data_config.get("crop_mode", "center")
    interpolation = data_config.get("interpolation", "bicubic")
    return PreprocessConfig(
        input_size=tuple(int(v) for v in data_config["input_size"]),  # type: ignore[arg-type]
        mean=tuple(float(v) for v in data_config["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in data_config["std"]),  # type: ignore[arg-type]
        # Modes this project's transform does not implement fall back to timm's default.
        interpolation=interpolation if interpolation != "random" else "bicubic",
        crop_pct=float(data_config.get("crop_pct", 0.875)),
        crop_mode=crop_mode if crop_mode in ("center", "squash") else "center",
    )


def create_train_transform(
    config: PreprocessConfig,
    *,
    scale: tuple[float, float],
    hflip: float,
    color_jitter: float,
) -> Callable[[Any], torch.Tensor]:
    """timm's training augmentation for an upright RGB PIL image, matched to ``config``."""
    transform: Callable[[Any], torch.Tensor] = timm.data.create_transform(
        input_size=config.input_size,
        is_training=True,
        scale=scale,
        hflip=hflip,
        color_jitter=color_jitter,
        interpolation=config.interpolation,
        mean=config.mean,
        std=config.std,
    )
    return transform


def reference_eval_transform(config: PreprocessConfig) -> Callable[[Any], torch.Tensor]:
    """timm's own eval transform for ``config``: the yardstick the parity tests compare to."""
    transform: Callable[[Any], torch.Tensor] = timm.data.create_transform(
        input_size=config.input_size,
        is_training=False,
        interpolation=config.interpolation,
        mean=config.mean,
        std=config.std,
        crop_pct=config.crop_pct,
        crop_mode=config.crop_mode,
    )
    return transform


def check_state_dict_fits(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    architecture: str,
    may_lack: Collection[str] = (),
) -> None:
    """Raise a CheckpointError naming every key or shape that does not match ``model``
    (of ``model``'s keys, only those in ``may_lack`` may be absent)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(found) - set(may_lack))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        f"{k}: weights {found[k]} vs model {expected[k]}"
        for k in sorted(set(expected) & set(found))
        if expected[k] != found[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches ({'; '.join(mismatched[:3])})")
    if problems:
        raise CheckpointError(
            f"weights do not match architecture {architecture!r}: " + ", ".join(problems)
        )


def dense_logits(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A classifier's logits (N, C) and the same head applied to each cell of its last
    feature map (N, h, w, C), from one forward pass.

    timm's heads average the feature map and apply one linear layer, so the image's logits
    are the mean of the cells' (before dropout): training the cells trains what the
    classifier pools, with no new layer.

    Raises:
        ConfigurationError: the architecture's head is not an average pool and a linear layer.
    """
    net: Any = model  # timm's API, untyped here
    classifier = net.get_classifier()
    pool = getattr(net, "global_pool", None)
    if not isinstance(classifier, nn.Linear) or getattr(pool, "pool_type", "avg") != "avg":
        raise ConfigurationError(
            f"{type(model).__name__} has no average-pool and linear head; the per-cell "
            "loss needs one (use --dense-weight 0)"
        )
    features: torch.Tensor = net.forward_features(images)
    logits: torch.Tensor = net.forward_head(features)
    cells: torch.Tensor = classifier(features.permute(0, 2, 3, 1))
    return logits, cells


def freeze_early_blocks(model: nn.Module, blocks: int) -> list[nn.Module]:
    """Stop training the stem and the first ``blocks`` stages of an EfficientNet-family
    classifier; return the frozen modules, which the trainer keeps in eval mode.

    Fine-tuning on a few hundred photographs moves the low-level ImageNet filters towards
    what tells those sources apart, and the backward pass through the full-resolution
    stages is most of a step's cost. timm's ``freeze`` is not used: it swaps BatchNorm for
    FrozenBatchNorm, whose state dict the serving model (plain BatchNorm) cannot load
    strictly.

    Raises:
        ConfigurationError: the architecture has no ``conv_stem``/``blocks`` stages, or
            fewer than ``blocks`` of them.
    """
    net: Any = model  # timm's API, untyped here
    stages = getattr(net, "blocks", None)
    if not hasattr(net, "conv_stem") or not isinstance(stages, nn.Sequential):
        raise ConfigurationError(
            f"{type(model).__name__} has no conv_stem and blocks stages to freeze "
            "(use --freeze-blocks 0)"
        )
    if not 0 <= blocks <= len(stages):
        raise ConfigurationError(
            f"--freeze-blocks {blocks}: {type(model).__name__} has {len(stages)} stages"
        )
    if blocks == 0:
        return []
    frozen: list[nn.Module] = [net.conv_stem, net.bn1, *list(stages)[:blocks]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


class ScoringModel(nn.Module):
    """A timm classifier that returns its logits and its features at every stage.

    The features feed the out-of-distribution gate (veracity.verdicts.ood): each stage's
    feature map averaged over space, then the pooled penultimate features, concatenated.
    Early stages describe texture and content, which the classifier's last layer is
    trained to ignore; inputs unlike the training data show there first. All come from
    the classifier's own forward pass (timm's ``forward_intermediates``), so the gate
    costs a few reductions. Exported to ONNX as is.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # timm's API, untyped here (timm's imports are not followed by mypy).
        model: Any = self.model
        final, stages = model.forward_intermediates(images)
        pooled: torch.Tensor = model.forward_head(final, pre_logits=True)
        logits: torch.Tensor = model.get_classifier()(pooled)
        groups = [pixel_statistics(images)] + [stage.mean(dim=(2, 3)) for stage in stages]
        return logits, torch.cat([*groups, pooled], dim=1)


# Floor of the log statistics: a perfectly flat or grey patch lands here, far below any
# camera image (one grey level of noise is about 0.017 in normalised units).
_LOG_FLOOR = 1e-3


def pixel_statistics(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) normalised patches -> (N, 8) log statistics of what the model reads.

    The traces a forensic classifier relies on live in the noise residual (the patch minus
    a 3x3 local mean): its spread per channel, its colour part (red and blue against
    green), and the patch's overall spread per channel. They are the first feature group of
    the out-of-distribution gate: a flat colour, a greyscale scan (no colour noise at all),
    or a heavily denoised photo is far from every camera-like training image here, however
    alike the classifier's deeper features make them look.
    """
    residual = _residual(images)
    chroma = residual[:, 0::2] - residual[:, 1:2]
    spreads = [_spread(residual, in_place=True), _spread(chroma, in_place=True), _spread(images)]
    return torch.log(torch.cat(spreads, dim=1) + _LOG_FLOOR)


def _spread(values: torch.Tensor, *, in_place: bool = False) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) standard deviations over H x W.

    From one sum and one sum of squares (on the CPU twice as fast as torch.std's two
    passes), of values shifted by their first element so that a constant channel gives
    exactly zero instead of a cancellation error. ``in_place`` shifts a temporary tensor
    without copying it.
    """
    flat = values.flatten(2)
    first = flat[..., :1].clone()
    shifted = flat.sub_(first) if in_place else flat - first
    count = shifted.shape[2]
    total = shifted.sum(dim=2)
    # vector_norm is a fused reduction; einsum's batched dot product is ten times slower.
    squares = torch.linalg.vector_norm(shifted, dim=2).square()
    variance = ((squares - total * total / count) / max(1, count - 1)).clamp_min(0)
    return torch.sqrt(variance)


def _residual(images: torch.Tensor) -> torch.Tensor:
    """Each pixel minus the 3x3 mean around it (over the neighbours that exist at the
    borders). The sums are separable sums of shifted slices, added in place: several
    times faster than avg_pool2d or a depthwise convolution on a CPU."""
    height, width = images.shape[-2:]
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    rows = padded[..., :-2, :] + padded[..., 1:-1, :]
    rows += padded[..., 2:, :]
    sums = rows[..., :-2] + rows[..., 1:-1]
    sums += rows[..., 2:]
    return torch.addcdiv(images, sums, _neighbour_counts(height, width, images), value=-1.0)


def _neighbour_counts(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W): how many pixels of its 3x3 neighbourhood each pixel has (9 inside)."""

    def along(length: int) -> torch.Tensor:
        counts = torch.full((length,), 3.0, dtype=like.dtype, device=like.device)
        counts[[0, -1]] -= 1  # an edge has one neighbour fewer on this axis
        return counts if length > 1 else counts.fill_(1.0)

    return (along(height)[:, None] * along(width)[None, :]).view(1, 1, height, width)


def feature_layers(model: nn.Module, input_size: tuple[int, int, int]) -> list[int]:
    """The widths of the feature groups ``ScoringModel`` concatenates, in order."""
    model_any: Any = model
    with torch.inference_mode():
        final, stages = model_any.forward_intermediates(torch.zeros(1, *input_size))
        pooled = model_any.forward_head(final, pre_logits=True)
    return [8] + [int(stage.shape[1]) for stage in stages] + [int(pooled.shape[1])]
