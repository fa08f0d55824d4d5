"""INT8: `veracity quantize` builds a graph and checks it against FP32; a replica serves it
only when the check passed and the graph is the one checked, and FP32 otherwise (saying
why, with the figures); `auto` takes it only where it is also faster."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from tests.api.conftest import API_KEY, jpeg_bytes, make_settings, serving
from veracity.checkpoint import load_checkpoint
from veracity.cli import main
from veracity.inference.engines import with_precision
from veracity.inference.precision import int8_paths
from veracity.inference.predictor import create_predictor
from veracity.quantization.build import quantize_checkpoint
from veracity.training.calibrate import validation_variants
from veracity.training.uploads import variant_uploads

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def quantized(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the tiny checkpoint and an export cache holding its checked INT8 graph."""
    root = tmp_path_factory.mktemp("int8")
    checkpoint = root / "tiny.safetensors"
    shutil.copy(tiny_checkpoint, checkpoint)
    shutil.copy(tiny_checkpoint.with_suffix(".json"), checkpoint.with_suffix(".json"))
    exports = root / "exports"
    argv = ["quantize", "--checkpoint", str(checkpoint), "--data", str(tiny_dataset)]
    assert main([*argv, "--export-dir", str(exports)]) == 0
    return checkpoint, exports


def predictor(checkpoint: Path, exports: Path, precision: str):
    loaded = load_checkpoint(checkpoint)
    return create_predictor(
        loaded,
        CPU,
        backend="onnx",
        export_dir=exports,
        precision=precision,  # type: ignore[arg-type]
    )


def test_the_checked_graph_serves_and_answers_like_fp32(quantized, capsys) -> None:
    checkpoint, exports = quantized
    weights = load_checkpoint(checkpoint).metadata.weights_sha256
    graph, record_path = int8_paths(exports, weights)
    record = json.loads(record_path.read_text())
    assert record["acceptance"]["agreement"] >= 0.99
    assert record["calibration_images"] == 12  # the tiny set's train split
    assert record["method"]["format"] == "QDQ"
    # Smaller than the FP32 export it was quantised from.
    assert graph.stat().st_size < (exports / f"{weights}.onnx").stat().st_size
    fp32 = predictor(checkpoint, exports, "fp32")
    int8 = predictor(checkpoint, exports, "int8")
    assert (fp32.backend.name, int8.backend.name) == ("onnx", "onnx-int8")
    image = jpeg_bytes(200, 150, seed=3)
    a = fp32.predict_prepared([fp32.prepare(image, robustness_check=False)])[0][0]
    b = int8.predict_prepared([int8.prepare(image, robustness_check=False)])[0][0]
    assert abs(a.fake_prob - b.fake_prob) <= record["acceptance"]["max_fake_prob_change"] + 0.05


def test_the_gate_features_are_computed_in_fp32(quantized) -> None:
    """The features the gate reads are not quantised: the pixel statistics (from the raw
    input) come out as FP32's, and the concatenated output is no 8-bit grid."""
    import onnx

    checkpoint, exports = quantized
    graph, _ = int8_paths(exports, load_checkpoint(checkpoint).metadata.weights_sha256)
    nodes = onnx.load(str(graph)).graph.node
    (output,) = [n for n in nodes if "features" in n.output]
    assert output.op_type == "Concat"
    fp32 = predictor(checkpoint, exports, "fp32")
    int8 = predictor(checkpoint, exports, "int8")
    patches = fp32.prepare(jpeg_bytes(200, 150, seed=6), robustness_check=False).tensor
    torch.testing.assert_close(int8.backend(patches)[1][:, :8], fp32.backend(patches)[1][:, :8])


def test_a_graph_that_fails_its_check_is_refused_with_its_figures(
    quantized, tiny_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint, _ = quantized
    exports = tmp_path / "exports"
    labelled = list(variant_uploads(validation_variants(tiny_dataset, seed=0)))
    record = quantize_checkpoint(
        checkpoint,
        calibration=(data for data, _ in labelled),
        acceptance=labelled,
        export_dir=exports,
        calibration_data="test",
        acceptance_data="test",
        max_ece_increase=-1.0,  # no graph can pass this
    )
    assert not record.acceptance.passed
    assert "calibration error" in record.acceptance.failures[0]
    with caplog.at_level(logging.WARNING, logger="veracity.precision"):
        served = predictor(checkpoint, exports, "int8")
    assert served.backend.name == "onnx"
    (refusal,) = [r for r in caplog.records if r.name == "veracity.precision"]
    assert "failed its check" in refusal.reason  # type: ignore[attr-defined]
    assert refusal.agreement == record.acceptance.agreement  # type: ignore[attr-defined]


def test_a_corrupt_or_foreign_graph_is_never_served(
    quantized, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint, built = quantized
    exports = tmp_path / "exports"
    shutil.copytree(built, exports)
    weights = load_checkpoint(checkpoint).metadata.weights_sha256
    graph, record_path = int8_paths(exports, weights)
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="veracity.precision"):
        assert predictor(checkpoint, exports, "int8").backend.name == "onnx"
    assert "does not match its record" in caplog.records[-1].reason  # type: ignore[attr-defined]
    # A record naming other weights.
    shutil.copyfile(built / graph.name, graph)
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps(record | {"weights_sha256": "0" * 64}))
    assert predictor(checkpoint, exports, "int8").backend.name == "onnx"
    assert "other weights" in caplog.records[-1].reason  # type: ignore[attr-defined]
    # None built at all: auto quietly serves FP32.
    empty = tmp_path / "empty"
    shutil.copytree(built, empty, ignore=shutil.ignore_patterns("*.int8.*"))
    caplog.clear()
    assert predictor(checkpoint, empty, "auto").backend.name == "onnx"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_takes_int8_only_where_it_is_faster(quantized) -> None:
    checkpoint, exports = quantized
    loaded = load_checkpoint(checkpoint)
    fp32 = predictor(checkpoint, exports, "fp32").backend

    def clock(seconds: dict[str, float]):
        return lambda engine, _: seconds[engine.name]

    faster = {"onnx": 1.0, "onnx-int8": 0.5}
    slower = {"onnx": 1.0, "onnx-int8": 1.5}
    options = {"export_dir": exports, "threads": None}
    assert with_precision(fp32, loaded, "auto", clock=clock(faster), **options).name == "onnx-int8"
    assert with_precision(fp32, loaded, "auto", clock=clock(slower), **options) is fp32


def test_the_service_serves_int8_when_asked_and_says_so(quantized) -> None:
    checkpoint, exports = quantized
    settings = make_settings(checkpoint, backend="onnx", precision="int8", export_dir=exports)
    with serving(settings) as client:
        key = {"X-API-Key": API_KEY}
        assert client.get("/model", headers=key).json()["backend"] == "onnx-int8"
        answer = client.post(
            "/infer", files={"file": ("a.jpg", jpeg_bytes(200, 150, seed=4))}, headers=key
        )
        assert answer.status_code == 200


def test_a_record_with_looser_bounds_or_another_calibration_is_refused(
    quantized, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint, built = quantized
    weights = load_checkpoint(checkpoint).metadata.weights_sha256
    for change, reason in (
        ({"acceptance": {"agreement": 0.95, "min_agreement": 0.9}}, "agreement 0.9500 < 0.99"),
        ({"calibration_version": 7}, "another calibration"),
    ):
        exports = tmp_path / reason.replace(" ", "-")
        shutil.copytree(built, exports)
        _, record_path = int8_paths(exports, weights)
        record = json.loads(record_path.read_text())
        for key, value in change.items():
            record[key] = record[key] | value if isinstance(value, dict) else value
        record_path.write_text(json.dumps(record))
        with caplog.at_level(logging.WARNING, logger="veracity.precision"):
            assert predictor(checkpoint, exports, "int8").backend.name == "onnx"
        assert reason in caplog.records[-1].reason  # type: ignore[attr-defined]


def test_int8_answers_are_cached_apart_from_fp32s(quantized) -> None:
    checkpoint, exports = quantized
    keys = {}
    for precision in ("fp32", "int8"):
        settings = make_settings(
            checkpoint, backend="onnx", precision=precision, export_dir=exports
        )
        with serving(settings) as client:
            runner = client.app.state.model_service.default
            keys[precision] = client.app.state.recorder.key(runner, "ab" * 32, "image", {})
    assert keys["fp32"] != keys["int8"]
