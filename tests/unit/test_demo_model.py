"""The committed demo checkpoint loads and meets its accuracy bar on data it never saw."""

from pathlib import Path

from torch.utils.data import DataLoader

from tests.conftest import DEMO_CHECKPOINT
from veracity.checkpoint import load_checkpoint
from veracity.devices import select_device
from veracity.models import CLASS_NAMES
from veracity.sampledata import SampleDataSpec, generate_sample_data
from veracity.training.dataset import create_eval_dataset, scan_split
from veracity.training.trainer import evaluate

UNSEEN_SEED = 20261121  # the demo was trained and validated on seed 0


def test_demo_checkpoint_is_small_and_complete() -> None:
    checkpoint = load_checkpoint(DEMO_CHECKPOINT)
    assert DEMO_CHECKPOINT.stat().st_size < 25 * 1024 * 1024
    meta = checkpoint.metadata
    assert meta.model_name == "veracity-demo"
    assert meta.metrics["val_accuracy"] >= 0.95
    assert meta.training["seed"] == 0


def test_demo_model_reaches_95_percent_on_unseen_sample_data(tmp_path: Path) -> None:
    checkpoint = load_checkpoint(DEMO_CHECKPOINT)
    preprocess = checkpoint.preprocess
    # Generated at the model's scale size, as the demo's training data was (Makefile).
    spec = SampleDataSpec(train_per_class=0, val_per_class=100, image_size=preprocess.scale_size[0])
    generate_sample_data(tmp_path, seed=UNSEEN_SEED, spec=spec)
    dataset = create_eval_dataset(scan_split(tmp_path, "val", CLASS_NAMES), preprocess)
    metrics = evaluate(checkpoint.model, DataLoader(dataset, batch_size=50), select_device("cpu"))
    assert metrics.accuracy >= 0.95, metrics
    assert metrics.roc_auc >= 0.98, metrics
