"""Natural photographs for evaluation, from the sample images that installed packages ship.

They are never used for training or calibration: they stand for the photographs a user
uploads, which the demo model's synthetic training data does not resemble. Each is a
photograph (camera, scanner, microscope or telescope), not a drawing. Sources:

- scikit-image's ``skimage/data`` (public-domain or CC0/CC-BY images; see that package's
  ``data/README.txt`` for each one's origin and licence);
- scikit-learn's ``sklearn/datasets/images`` (``china.jpg``, ``flower.jpg``: CC-BY photos);
- matplotlib's ``mpl-data/sample_data/grace_hopper.jpg`` (public domain, US Navy).

Packages that are not installed are skipped; the test suite installs all three
(requirements-dev.txt).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

PHOTOGRAPHS: dict[str, tuple[str, ...]] = {
    "skimage": (
        "data/astronaut.png",
        "data/brick.png",
        "data/camera.png",
        "data/cell.png",
        "data/chelsea.png",
        "data/clock_motion.png",
        "data/coffee.png",
        "data/coins.png",
        "data/grass.png",
        "data/gravel.png",
        "data/hubble_deep_field.jpg",
        "data/ihc.png",
        "data/moon.png",
        "data/motorcycle_left.png",
        "data/motorcycle_right.png",
        "data/page.png",
        "data/retina.jpg",
        "data/rocket.jpg",
        "data/text.png",
    ),
    "sklearn": ("datasets/images/china.jpg", "datasets/images/flower.jpg"),
    "matplotlib": ("mpl-data/sample_data/grace_hopper.jpg",),
}

# Drawings and synthetic graphics, for the out-of-distribution tests: not photographs.
DRAWINGS: dict[str, tuple[str, ...]] = {
    "skimage": ("data/horse.png", "data/logo.png", "data/phantom.png"),
}


def _collect(table: dict[str, tuple[str, ...]]) -> list[Path]:
    found: list[Path] = []
    for package, names in table.items():
        # The package's folder without importing it (scikit-learn takes a second to import).
        spec = find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        found.extend(root / name for name in names if (root / name).is_file())
    return found


def natural_photographs() -> list[Path]:
    """The photographs of the packages that are installed, in a fixed order."""
    return _collect(PHOTOGRAPHS)


def drawings() -> list[Path]:
    return _collect(DRAWINGS)
