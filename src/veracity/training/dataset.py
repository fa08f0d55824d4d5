"""ImageFolder datasets (``ROOT/{train,val}/{real,fake}/*``), checked before training starts.

The layout is torchvision's ImageFolder, so people can point training at their own frames,
but class folders are matched by name rather than sorted, because the output order
(real, fake) is part of the model's contract.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from veracity.errors import DatasetError, InvalidImageError
from veracity.images import load_rgb, open_image
from veracity.preprocess import ImageTransform, PreprocessConfig

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})

Sample = tuple[Path, int]


def scan_split(root: Path, split: str, class_names: tuple[str, ...]) -> list[Sample]:
    """List ``(path, class_index)`` for one split, checking layout and every image header.

    Raises:
        DatasetError: a missing split or class folder, an unknown class folder, a class with
            no images, or a file that is not a readable image (named in the message).
    """
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(
            f"split folder {split_dir} not found; expected {root}/{{train,val}}/"
            f"{{{','.join(class_names)}}}/"
        )
    present = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    missing = [c for c in class_names if c not in present]
    if missing:
        raise DatasetError(
            f"class folder(s) {', '.join(missing)} missing in {split_dir} "
            f"(found: {', '.join(present) or 'none'})"
        )
    unknown = [c for c in present if c not in class_names]
    if unknown:
        raise DatasetError(
            f"unexpected folder(s) {', '.join(unknown)} in {split_dir}; only "
            f"{', '.join(class_names)} are classes"
        )
    samples: list[Sample] = []
    for index, name in enumerate(class_names):
        files = sorted(
            p
            for p in (split_dir / name).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise DatasetError(f"{split_dir / name} has no images (extensions: {extensions})")
        for path in files:
            _check_header(path)
            samples.append((path, index))
    return samples


def _check_header(path: Path) -> None:
    try:
        open_image(path).close()
    except InvalidImageError as e:
        raise DatasetError(f"unreadable image {path}: {e.message}") from e


class ImageFolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """Reads images with the service's decoder, so orientation and colour match serving."""

    def __init__(
        self,
        samples: list[Sample],
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        min_decode_size: int | None = None,
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.min_decode_size = min_decode_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            image = load_rgb(path, min_size=self.min_decode_size)
        except InvalidImageError as e:
            raise DatasetError(f"unreadable image {path}: {e.message}") from e
        return self.transform(image), label

    def labels(self) -> list[int]:
        return [label for _, label in self.samples]


def create_eval_dataset(samples: list[Sample], preprocess: PreprocessConfig) -> ImageFolderDataset:
    """Validation data decoded and transformed exactly as the service does it: each item
    is (patches, 3, H, W)."""
    transform = ImageTransform(preprocess)
    return ImageFolderDataset(samples, transform, min_decode_size=preprocess.min_decode_size)
