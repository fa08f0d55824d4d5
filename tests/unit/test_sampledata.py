import hashlib
from pathlib import Path

from veracity.sampledata import SampleDataSpec, generate_sample_data

SMALL = SampleDataSpec(train_per_class=3, val_per_class=2, image_size=64)


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


def test_writes_the_imagefolder_layout(tmp_path: Path) -> None:
    assert generate_sample_data(tmp_path, seed=1, spec=SMALL) == 10
    for split, count in (("train", 3), ("val", 2)):
        for label in ("real", "fake"):
            files = sorted((tmp_path / split / label).glob("*.png"))
            assert len(files) == count


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    generate_sample_data(tmp_path / "a", seed=11, spec=SMALL)
    generate_sample_data(tmp_path / "b", seed=11, spec=SMALL)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_different_seeds_give_different_images(tmp_path: Path) -> None:
    generate_sample_data(tmp_path / "a", seed=1, spec=SMALL)
    generate_sample_data(tmp_path / "b", seed=2, spec=SMALL)
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)


def test_an_image_does_not_depend_on_how_many_others_are_generated(tmp_path: Path) -> None:
    generate_sample_data(tmp_path / "small", seed=4, spec=SMALL)
    generate_sample_data(tmp_path / "big", seed=4, spec=SampleDataSpec(5, 4, image_size=64))
    small, big = digests(tmp_path / "small"), digests(tmp_path / "big")
    assert all(big[k] == v for k, v in small.items())
