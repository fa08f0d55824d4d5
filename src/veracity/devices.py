"""Choosing the torch device: CUDA, then Apple MPS, then CPU, unless one is asked for."""

from __future__ import annotations

import torch

from veracity.errors import ConfigurationError

# Named where settings can read it without torch; kept importable here for the callers.
from veracity.runtime import DevicePreference


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(preference: DevicePreference = "auto") -> torch.device:
    """Resolve a preference to an available device.

    Raises:
        ConfigurationError: an explicit device that this machine does not have; silently
            falling back would hide a misconfigured GPU node behind a 20x slower service.
    """
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("device 'cuda' was requested but no CUDA device is available")
    if preference == "mps" and not _mps_available():
        raise ConfigurationError("device 'mps' was requested but Apple MPS is not available")
    if preference not in ("cpu", "cuda", "mps"):
        raise ConfigurationError(f"device must be auto, cpu, cuda or mps, got {preference!r}")
    return torch.device(preference)
