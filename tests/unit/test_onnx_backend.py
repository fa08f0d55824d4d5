"""ONNX Runtime backend: parity with PyTorch eager, and the weights-keyed export cache."""

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import DEMO_CHECKPOINT, write_tiny_checkpoint
from veracity.checkpoint import load_checkpoint
from veracity.cli import main
from veracity.errors import ConfigurationError
from veracity.export import ensure_onnx, export_path
from veracity.inference.backends import OnnxBackend, TorchBackend
from veracity.inference.predictor import Predictor
from veracity.models import CLASS_NAMES
from veracity.preprocess import ImageTransform
from veracity.training.dataset import ImageFolderDataset, scan_split

# Measured differences are below 1e-5 in the logits; probabilities must agree to 1e-4.
PROB_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_onnx_matches_torch_eager_on_real_images(
    which, tiny_checkpoint, tiny_dataset, export_dir
) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint if which == "tiny" else DEMO_CHECKPOINT)
    cpu = torch.device("cpu")
    onnx = OnnxBackend(ensure_onnx(checkpoint, export_dir), cpu, threads=1)
    eager = Predictor(checkpoint, cpu)
    served = Predictor(checkpoint, cpu, backend=onnx)
    samples = scan_split(tiny_dataset, "val", CLASS_NAMES) + scan_split(
        tiny_dataset, "train", CLASS_NAMES
    )
    images = ImageFolderDataset(samples, ImageTransform(checkpoint.preprocess))
    batch = torch.stack([images[i][0] for i in range(len(images))])
    for inputs in (batch[:1], batch[:8], batch):  # batch sizes 1, 8 and 20
        for a, b in zip(eager.predict(inputs), served.predict(inputs), strict=True):
            assert b.fake_prob == pytest.approx(a.fake_prob, abs=PROB_TOLERANCE)
            # The gate reads the same features from either backend.
            if a.ood_score is not None:
                assert b.ood_score == pytest.approx(a.ood_score, rel=1e-3, abs=1e-3)
            assert b.real_prob + b.fake_prob == pytest.approx(1.0, abs=1e-12)
    assert served.backend.name == "onnx"
    assert isinstance(eager.backend, TorchBackend)


def test_export_is_reused_while_the_weights_are_unchanged(
    tiny_checkpoint, export_dir, monkeypatch
) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    first = ensure_onnx(checkpoint, export_dir)
    assert first == export_path(export_dir, checkpoint)
    assert first.name == f"{checkpoint.metadata.weights_sha256}.onnx"

    def no_export(*args, **kwargs):
        raise AssertionError("a valid export must be reused")

    monkeypatch.setattr("veracity.export.export_onnx", no_export)
    assert ensure_onnx(checkpoint, export_dir) == first


def test_a_changed_checkpoint_gets_its_own_export(tmp_path: Path, export_dir) -> None:
    a = load_checkpoint(write_tiny_checkpoint(tmp_path / "a.safetensors", seed=1))
    b = load_checkpoint(write_tiny_checkpoint(tmp_path / "b.safetensors", seed=2))
    assert ensure_onnx(a, export_dir) != ensure_onnx(b, export_dir)


def test_an_altered_export_is_rebuilt(tiny_checkpoint, export_dir) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    path = ensure_onnx(checkpoint, export_dir)
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])  # e.g. a crash mid-copy
    rebuilt = ensure_onnx(checkpoint, export_dir)
    assert rebuilt == path
    assert (
        json.loads(path.with_suffix(".json").read_text())["weights_sha256"]
        == checkpoint.metadata.weights_sha256
    )
    OnnxBackend(rebuilt, torch.device("cpu"), threads=1)  # loads again


def test_onnx_on_cuda_without_the_cuda_provider_is_a_clear_error(
    tiny_checkpoint, export_dir
) -> None:
    path = ensure_onnx(load_checkpoint(tiny_checkpoint), export_dir)
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine's onnxruntime has the CUDA provider")
    with pytest.raises(ConfigurationError, match="CUDA provider"):
        OnnxBackend(path, torch.device("cuda"), threads=1)


def test_cli_export_and_predict_with_the_onnx_backend(
    tiny_checkpoint, tiny_dataset, tmp_path, capsys
) -> None:
    out = tmp_path / "exports"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out-dir", str(out)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert Path(exported["onnx"]).is_file()
    image = sorted((tiny_dataset / "val" / "fake").glob("*.png"))[0]
    results = {}
    for backend in ("torch", "onnx"):
        args = [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            "--backend",
            backend,
            "--export-dir",
            str(out),
            str(image),
        ]
        assert main(args) == 0
        results[backend] = json.loads(capsys.readouterr().out)
    assert results["onnx"]["fake_prob"] == pytest.approx(
        results["torch"]["fake_prob"], abs=PROB_TOLERANCE
    )
