import pytest
import torch

from veracity.devices import select_device
from veracity.errors import ConfigurationError


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto").type == "cpu"


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_an_unavailable_explicit_device_is_an_error_not_a_fallback(monkeypatch, device) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigurationError, match=f"'{device}' was requested"):
        select_device(device)


def test_cpu_is_always_available() -> None:
    assert select_device("cpu") == torch.device("cpu")


def test_unknown_device_is_named() -> None:
    with pytest.raises(ConfigurationError, match="'tpu'"):
        select_device("tpu")  # type: ignore[arg-type]
