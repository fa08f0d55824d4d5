"""Real/fake training pairs made from one split of the real-photo corpus.

Item ``i`` of ``PairDataset`` is a pair: real image ``i`` of the split (a photograph or a
frame sampled from a real clip) and a fake made from it (``veracity.edits.make_fake``;
a splice takes its donor from another photograph of the same split). Both go through the
same final processing, drawn once per pair: the image finish (resize, blur, JPEG or WebP;
``veracity.edits.finish``) or, for a share of pairs, a short web video clip (H.264 or VP9;
``webvideo``). So neither the encoding nor the size tells the classes apart (Wang et al.,
CNNDetection, 2020). Both are then cropped, not resized, at the model's input size, at the
same place, chosen so that the fake's crop holds edited pixels; the crop of the edit's
mask comes with them, for a localisation loss or an evaluation of where the edit is.

Everything is drawn from a generator seeded by (seed, epoch, index): an item is the same
whichever worker builds it, and ``set_epoch`` draws new edits for the next epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import Dataset

from veracity.corpus.fetch import require_corpus
from veracity.corpus.manifest import SPLITS, CorpusError, read_manifest
from veracity.edits import EDIT_KINDS, FinishOptions, apply_finish, draw_finish, make_fake
from veracity.edits.regions import Image, Mask, working_size
from veracity.edits.webvideo import WebVideoOptions, draw_web_video, web_video
from veracity.preprocess import PreprocessConfig
from veracity.training.media import PHOTO_ROLES, VIDEO_ROLES, Base, SplitMedia

# The model's output order is (real, fake) (veracity.models.CLASS_NAMES).
REAL, FAKE = 0, 1
# Edits any photograph can take; self-blending also needs a face's landmarks, so it is
# drawn only for real images where a face was found (``PairOptions.self_blend``).
PHOTO_KINDS = tuple(name for name, kind in EDIT_KINDS.items() if not kind.needs_landmarks)
FACE_KIND = "self_blend"
# A face narrower than this (working-size pixels) is not blended: SBI's artefacts (the
# blend's boundary, the colour shift) need a face of some size to be anything but noise.
MIN_BLEND_FACE = 48
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PairOptions:
    """How pairs are made. ``video_share``: the share of pairs encoded as web video instead
    of the image finish; ``frames_per_clip``: frames sampled from each real clip."""

    crop: int = 224
    max_side: int = 1024
    kinds: tuple[str, ...] = PHOTO_KINDS
    video_share: float = 0.0
    frames_per_clip: int = 16
    cache_size: int = 16
    crops_per_pair: int = 1  # the first where the edit is, the others anywhere
    min_edit_share: float = 0.0  # a fake crop with less of the edit is labelled real
    # Real images with a face (CenterFace, veracity.faces) may also be self-blended (SBI).
    self_blend: bool = False
    seed: int = 0
    mean: tuple[float, float, float] = _IMAGENET_MEAN
    std: tuple[float, float, float] = _IMAGENET_STD
    finish: FinishOptions = field(default_factory=FinishOptions)
    web_video: WebVideoOptions = field(default_factory=WebVideoOptions)

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in PHOTO_KINDS]
        if not self.kinds or unknown:
            raise ValueError(f"kinds must be a non-empty subset of {', '.join(PHOTO_KINDS)}")
        if not 0.0 <= self.video_share <= 1.0:
            raise ValueError(f"video_share must be in [0, 1], got {self.video_share}")
        if not 32 <= self.crop <= self.max_side:
            raise ValueError(f"crop must be in [32, max_side], got {self.crop}")
        if not 1 <= self.crops_per_pair <= 16:
            raise ValueError(f"crops_per_pair must be in [1, 16], got {self.crops_per_pair}")
        if not 0.0 <= self.min_edit_share < 1.0:
            raise ValueError(f"min_edit_share must be in [0, 1), got {self.min_edit_share}")


@dataclass(frozen=True)
class Pair:
    """One pair as images (crop x crop x 3, uint8): the real, the fake, the crop of the
    fake's edit mask, and what was drawn for it."""

    real: Image
    fake: Image
    mask: Mask
    base: str  # the real image: its corpus path (and #frame for a clip's frame)
    kind: str
    donor: str | None
    processing: dict[str, object]  # "finish" or "web_video", with the parameters drawn
    box: tuple[int, int]  # the crop's top-left corner (row, column)


@dataclass(frozen=True)
class FinishedPair:
    """A pair as whole finished images (the real, the fake, the fake's edit mask), before
    any crop, and what was drawn for it."""

    real: Image
    fake: Image
    mask: Mask
    base: str
    kind: str
    donor: str | None
    processing: dict[str, object]


class PairSample(NamedTuple):
    """What the dataset yields for K crops per pair: images (2K, 3, S, S) normalised, the
    K real crops first, then the fake's at the same places; labels (2K,): REAL for the
    reals, FAKE for a fake crop where the edit covers more than ``min_edit_share`` (the
    first always holds some of it), REAL otherwise; masks (2K, S, S) bool (the reals' all
    False)."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


class PairDataset(Dataset[PairSample]):
    """Pairs made from ``media`` (one split). ``len`` is the number of real images."""

    def __init__(self, media: SplitMedia, options: PairOptions = PairOptions()) -> None:
        if not media.bases:
            raise CorpusError("the split has no real images to make pairs from")
        if "splice" in options.kinds and len(media.photos) < 2:
            raise CorpusError("splice needs at least two photographs in the split")
        self.media = media
        self.options = options
        self.epoch = 0
        # Landmarks of each real image's largest face, by base index (self_blend only).
        self.faces: dict[int, np.ndarray] = find_faces(media) if options.self_blend else {}
        self._mean = torch.tensor(options.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(options.std).view(1, 3, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """Draw other edits, finishes and crops for every item (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.media.bases)

    def __getitem__(self, index: int) -> PairSample:
        finished, rng = self._finished(index)
        crop = self.options.crop
        boxes = [crop_box(finished.mask, crop, rng)]
        height, width = finished.mask.shape
        for _ in range(self.options.crops_per_pair - 1):
            boxes.append(
                (int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1)))
            )
        windows = [(slice(t, t + crop), slice(left, left + crop)) for t, left in boxes]
        reals = [finished.real[w] for w in windows]
        fakes = [finished.fake[w] for w in windows]
        masks = [finished.mask[w] for w in windows]
        pixels = torch.from_numpy(np.stack([*reals, *fakes]))
        images = pixels.permute(0, 3, 1, 2).float().div(255.0)
        fake_labels = [FAKE if m.mean() > self.options.min_edit_share else REAL for m in masks]
        none = np.zeros_like(masks[0])
        return PairSample(
            images=(images - self._mean) / self._std,
            labels=torch.tensor([REAL] * len(reals) + fake_labels),
            masks=torch.from_numpy(np.stack([none] * len(reals) + masks)),
        )

    def finished(self, index: int) -> FinishedPair:
        """Pair ``index`` of the current epoch as whole images, before any crop."""
        return self._finished(index)[0]

    def pair(self, index: int) -> Pair:
        """Pair ``index`` of the current epoch, as images."""
        finished, rng = self._finished(index)
        top, left = crop_box(finished.mask, self.options.crop, rng)
        window = slice(top, top + self.options.crop), slice(left, left + self.options.crop)
        return Pair(
            real=np.ascontiguousarray(finished.real[window]),
            fake=np.ascontiguousarray(finished.fake[window]),
            mask=np.ascontiguousarray(finished.mask[window]),
            base=finished.base,
            kind=finished.kind,
            donor=finished.donor,
            processing=finished.processing,
            box=(top, left),
        )

    def _finished(self, index: int) -> tuple[FinishedPair, np.random.Generator]:
        """The whole finished pair and the generator, ready for the crops' draws."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        options = self.options
        rng = self._rng(index)
        base = self.media.bases[index]
        image = self.media.load(base)
        kind = self._draw_kind(rng, index)
        donor_base = self._donor(base, rng) if kind == "splice" else None
        donor = None if donor_base is None else self.media.load(donor_base)
        edit = make_fake(image, rng, kind, donor, self.faces.get(index))
        if rng.random() < options.video_share:
            real, fake, mask, processing = self._as_web_video(image, edit.image, edit.mask, rng)
        else:
            real, fake, mask, processing = self._finish(image, edit.image, edit.mask, rng)
        (real, fake), mask = _fit([real, fake], mask, options.crop)
        finished = FinishedPair(
            real=real,
            fake=fake,
            mask=mask,
            base=base.name,
            kind=edit.kind,
            donor=None if donor_base is None else donor_base.name,
            processing=processing,
        )
        return finished, rng

    def kind_at(self, index: int) -> str:
        """The edit kind pair ``index`` of the current epoch gets, without making it."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._draw_kind(self._rng(index), index)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.options.seed, self.epoch, index])

    def _draw_kind(self, rng: np.random.Generator, index: int) -> str:
        # The first draw of an item's generator, so kind_at matches pair.
        kinds = self.options.kinds + ((FACE_KIND,) if index in self.faces else ())
        return kinds[int(rng.integers(len(kinds)))]

    def _donor(self, base: Base, rng: np.random.Generator) -> Base:
        others = [p for p in self.media.photos if p.entry.local_path != base.entry.local_path]
        return others[int(rng.integers(len(others)))]

    def _finish(
        self, real: Image, fake: Image, mask: Mask, rng: np.random.Generator
    ) -> tuple[Image, Image, Mask, dict[str, object]]:
        height, width = real.shape[:2]
        params = draw_finish(rng, height, width, self.options.finish)
        # The crop must fit after the resize; the same clamp for both, so it is no cue.
        floor = self.options.crop / min(height, width)
        if min(params.height / height, params.width / width) < floor:
            scale = min(1.0, floor)
            params = replace(params, width=round(width * scale), height=round(height * scale))
        finished_real = apply_finish(real, params)
        finished_fake = apply_finish(fake, params, mask)
        assert finished_fake.mask is not None  # apply_finish resizes the mask it is given
        processing: dict[str, object] = {"kind": "finish", **params.as_dict()}
        return finished_real.image, finished_fake.image, finished_fake.mask, processing

    def _as_web_video(
        self, real: Image, fake: Image, mask: Mask, rng: np.random.Generator
    ) -> tuple[Image, Image, Mask, dict[str, object]]:
        params = draw_web_video(rng, real.shape[0], real.shape[1], self.options.web_video)
        # Not the first frame: most frames of a web video are predicted, not intra-coded.
        frame = int(rng.integers(1, params.frames)) if params.frames > 1 else 0
        real_clip = web_video(real, params)
        fake_clip = web_video(fake, params, mask)
        assert fake_clip.masks is not None  # web_video moves the mask it is given
        processing: dict[str, object] = {
            "kind": "web_video",
            "codec": params.codec,
            "crf": params.crf,
            "width": params.width,
            "height": params.height,
            "frame": frame,
        }
        return real_clip.frames[frame], fake_clip.frames[frame], fake_clip.masks[frame], processing


def find_faces(media: SplitMedia) -> dict[int, np.ndarray]:
    """The five landmarks (x, y) of the largest face in each real image at working size,
    by base index, for faces at least ``MIN_BLEND_FACE`` wide whose landmarks lie inside
    the image (a face cut by the border cannot be blended whole).

    Raises:
        ConfigurationError: the face detector's model is missing (`veracity
            fetch-face-detector`).
    """
    from veracity.faces import FaceDetector

    detector = FaceDetector(max_faces=1)
    found: dict[int, np.ndarray] = {}
    for index, base in enumerate(media.bases):
        image = media.load(base)
        height, width = image.shape[:2]
        for face in detector.detect(PILImage.fromarray(image)):
            points = np.asarray(face.landmarks, dtype=np.float64)
            inside = (
                points.shape == (5, 2)
                and (points >= 0).all()
                and (points[:, 0] <= width - 1).all()
                and (points[:, 1] <= height - 1).all()
            )
            if inside and face.right - face.left >= MIN_BLEND_FACE:
                found[index] = points
    return found


def _fit(images: list[Image], mask: Mask, crop: int) -> tuple[list[Image], Mask]:
    """Images (and the mask) enlarged where a side is below ``crop`` (rounding can leave
    one a pixel short)."""
    height, width = mask.shape
    if min(height, width) >= crop:
        return images, mask
    fitted = [working_size(image, max(height, width) * 2, crop) for image in images]
    grown = working_size(np.repeat(mask[..., None].astype(np.uint8), 3, axis=2), 10**6, crop)
    return fitted, grown[..., 0] > 0


def crop_box(mask: Mask, crop: int, rng: np.random.Generator) -> tuple[int, int]:
    """The top-left corner of a ``crop`` x ``crop`` window that holds a marked pixel of
    ``mask`` (one drawn uniformly, then the window placed uniformly around it), or a
    uniform window where nothing is marked."""
    height, width = mask.shape
    if min(height, width) < crop:
        raise ValueError(f"a {width}x{height} image has no {crop}x{crop} crop")
    marked = np.flatnonzero(mask)
    if marked.size == 0:
        return int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1))
    row, column = divmod(int(marked[int(rng.integers(marked.size))]), width)
    top_low, top_high = max(0, row - crop + 1), min(row, height - crop)
    left_low, left_high = max(0, column - crop + 1), min(column, width - crop)
    return int(rng.integers(top_low, top_high + 1)), int(rng.integers(left_low, left_high + 1))


def collate_pairs(batch: list[PairSample]) -> tuple[torch.Tensor, torch.Tensor]:
    """A DataLoader's ``collate_fn``: B pairs -> (2B, 3, S, S) images and (2B,) labels,
    each real next to its fake."""
    images = torch.cat([sample.images for sample in batch])
    labels = torch.cat([sample.labels for sample in batch])
    return images, labels


def collate_pairs_with_masks(
    batch: list[PairSample],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``collate_pairs`` plus the (2B, S, S) masks."""
    images, labels = collate_pairs(batch)
    return images, labels, torch.cat([sample.masks for sample in batch])


def build_pair_dataset(
    root: Path,
    split: str,
    options: PairOptions = PairOptions(),
    *,
    manifest: Path | None = None,
    preprocess: PreprocessConfig | None = None,
) -> PairDataset:
    """Pairs from one split of the fetched corpus under ``root``, checked first.

    ``preprocess`` (the model's) sets the crop size, mean and std. Real clips are sampled
    here, once; photographs are decoded as items are asked for.

    Raises:
        CorpusError: an unknown split, a file missing or changed (run `veracity
            fetch-corpus`), a split without images.
    """
    if split not in SPLITS:
        raise CorpusError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if preprocess is not None:
        options = replace(
            options, crop=preprocess.input_size[1], mean=preprocess.mean, std=preprocess.std
        )
    roles = PHOTO_ROLES + VIDEO_ROLES
    entries = [e for e in read_manifest(manifest) if e.split == split and e.role in roles]
    require_corpus(entries, root)
    media = SplitMedia(
        entries,
        root,
        max_side=options.max_side,
        min_side=options.crop,
        frames_per_clip=options.frames_per_clip,
        cache_size=options.cache_size,
    )
    return PairDataset(media, options)
