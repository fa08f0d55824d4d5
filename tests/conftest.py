"""Fixtures shared by every test layer: tiny datasets and checkpoints built on the spot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from veracity.checkpoint import save_checkpoint
from veracity.models import CLASS_NAMES, create_classifier, resolve_preprocess_config
from veracity.sampledata import SampleDataSpec, generate_sample_data

TINY_ARCH = "test_efficientnet"  # ~100k parameters: builds and runs in milliseconds
TINY_SIZE = 64

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO_ROOT / "checkpoints" / "demo.safetensors"
# The model of the synthetic sample data (`make synthetic-model`): tests that need known
# answers on those generated scenes use it.
SYNTHETIC_CHECKPOINT = REPO_ROOT / "checkpoints" / "synthetic.safetensors"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-data")
    generate_sample_data(
        root, seed=7, spec=SampleDataSpec(train_per_class=6, val_per_class=6, image_size=80)
    )
    return root


def write_tiny_checkpoint(path: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create_classifier(TINY_ARCH)
    save_checkpoint(
        path,
        model,
        architecture=TINY_ARCH,
        class_names=CLASS_NAMES,
        preprocess=resolve_preprocess_config(model, image_size=TINY_SIZE),
        model_name="tiny",
        model_version="0.0.1",
        metrics={"val_accuracy": 0.5},
    )
    return path


def make_repository(root: Path) -> Path:
    """tiny/1, tiny/2 (other weights), other/1, a corrupt tiny/broken and an empty dir."""
    write_tiny_checkpoint(root / "tiny" / "1" / "model.safetensors", seed=0)
    write_tiny_checkpoint(root / "tiny" / "2" / "model.safetensors", seed=1)
    write_tiny_checkpoint(root / "other" / "1" / "model.safetensors", seed=2)
    broken = root / "tiny" / "broken"
    shutil.copytree(root / "tiny" / "2", broken)
    weights = broken / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the metadata's SHA-256 no longer matches
    weights.write_bytes(bytes(data))
    (root / "tiny" / "empty").mkdir()
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (the installed binaries; skipped, saying
    why, on a machine without them)."""
    from tests.pgserver import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries installed (apt-get install postgresql)")
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.close()


_database_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend the store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"test_{next(_database_counter)}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests run last. Playwright's sync API keeps an event loop running in the
    main thread from the first browser test to the end of the session, and asyncio.run()
    refuses to start beside it: the tests that drive coroutines must all have run first."""
    items.sort(key=lambda item: "browser" in item.path.relative_to(REPO_ROOT).parts[:2])
