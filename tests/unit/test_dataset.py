import shutil
from pathlib import Path

import pytest

from veracity.errors import DatasetError
from veracity.models import CLASS_NAMES
from veracity.training.dataset import ImageFolderDataset, scan_split


@pytest.fixture
def dataset(tmp_path: Path, tiny_dataset: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    return root


def test_scans_classes_in_contract_order(dataset: Path) -> None:
    samples = scan_split(dataset, "train", CLASS_NAMES)
    assert {label for _, label in samples} == {0, 1}
    assert all(path.parent.name == CLASS_NAMES[label] for path, label in samples)
    assert len(samples) == 12


def test_missing_split_is_named(dataset: Path) -> None:
    shutil.rmtree(dataset / "val")
    with pytest.raises(DatasetError, match=r"split folder .*val not found"):
        scan_split(dataset, "val", CLASS_NAMES)


def test_missing_class_folder_is_named(dataset: Path) -> None:
    shutil.rmtree(dataset / "train" / "fake")
    with pytest.raises(DatasetError, match=r"class folder\(s\) fake missing .*found: real"):
        scan_split(dataset, "train", CLASS_NAMES)


def test_unknown_class_folder_is_named(dataset: Path) -> None:
    (dataset / "train" / "maybe").mkdir()
    with pytest.raises(DatasetError, match=r"unexpected folder\(s\) maybe"):
        scan_split(dataset, "train", CLASS_NAMES)


def test_empty_class_is_named(dataset: Path) -> None:
    for image in (dataset / "val" / "real").iterdir():
        image.unlink()
    (dataset / "val" / "real" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"val/real has no images"):
        scan_split(dataset, "val", CLASS_NAMES)


def test_unreadable_image_is_named(dataset: Path) -> None:
    bad = dataset / "train" / "real" / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(DatasetError, match=r"unreadable image .*broken.jpg"):
        scan_split(dataset, "train", CLASS_NAMES)


def test_image_truncated_after_its_header_is_named_when_read(dataset: Path) -> None:
    samples = scan_split(dataset, "train", CLASS_NAMES)
    path = samples[0][0]
    path.write_bytes(path.read_bytes()[:200])
    dataset_ = ImageFolderDataset(samples, transform=lambda image: image)
    with pytest.raises(DatasetError, match=rf"unreadable image .*{path.name}"):
        dataset_[0]


def test_hidden_files_and_other_extensions_are_ignored(dataset: Path) -> None:
    (dataset / "train" / "real" / ".DS_Store").write_bytes(b"\x00\x01")
    (dataset / "train" / "real" / "README.txt").write_text("hello")
    assert len(scan_split(dataset, "train", CLASS_NAMES)) == 12
