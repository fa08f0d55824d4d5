"""Resumable training state (optimizer, progress, RNG) stored as safetensors, never pickle.

A resume needs more than the model weights: AdamW's moment estimates, the step count that
drives the learning-rate schedule, and the random-number streams that drive augmentation
and shuffling. Tensors go in the safetensors body; the rest is JSON in its string metadata.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from veracity.checkpoint import atomic_write
from veracity.errors import CheckpointError

STATE_SUFFIX = ".state.safetensors"


@dataclass(frozen=True)
class TrainingProgress:
    epoch: int  # the last completed epoch, 1-based
    step: int  # optimizer steps taken
    best_score: list[float]  # the ranking key of the best checkpoint so far


def state_path_for(weights: Path) -> Path:
    return weights.with_name(weights.name.removesuffix(".safetensors") + STATE_SUFFIX)


def save_training_state(
    path: Path, optimizer: torch.optim.Optimizer, progress: TrainingProgress
) -> None:
    optim_state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in optim_state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    metadata = {
        "param_groups": json.dumps(optim_state["param_groups"]),
        "optim_scalars": json.dumps(scalars),
        "progress": json.dumps(progress.__dict__),
        "rng_python": json.dumps(random.getstate()),
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_training_state(path: Path, optimizer: torch.optim.Optimizer) -> TrainingProgress:
    """Restore optimizer state and RNG streams in place; return the saved progress."""
    if not path.is_file():
        raise CheckpointError(
            f"training state {path} not found; resume needs the 'last' checkpoint of a run"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
        param_groups = json.loads(metadata["param_groups"])
        scalars = json.loads(metadata["optim_scalars"])
        progress = TrainingProgress(**json.loads(metadata["progress"]))
        python_rng = json.loads(metadata["rng_python"])
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"training state {path} is unreadable: {e}") from e
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in scalars.items():
        state.setdefault(int(param_id), {}).update(entries)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": param_groups})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"training state {path} does not fit this model: {e}") from e
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    version, internal, gauss = python_rng
    random.setstate((version, tuple(internal), gauss))
    return progress
