"""The held-out photographs judged as a user meets them: as shipped, re-saved, and edited.

For each photograph of the held-out list (``corpus/heldout.tsv``, sources never trained,
tuned or calibrated on) the checkpoint judges, through the same ``Predictor`` as the
service (decode, quality gates, patches, calibration, gate, operating points):

- ``untouched``: the file as the package ships it;
- ``jpeg``: the photograph re-saved as JPEG (quality 90 by default) at the working size
  (longest side at most ``max_side``; smaller photographs keep their size): what an
  everyday photograph looks like once it has been shared;
- ``edited``: one copy per edit kind (``edits.make_fake``; the region covers 3-15% of the
  working image; a splice takes its donor from the next photograph of the list), encoded
  exactly as the ``jpeg`` item. Real and fake get the same final processing, one fixed
  JPEG encoding rather than ``edits.finish``'s random draw, so the numbers of each kind
  are comparable, reproducible, and measure the goal's condition ("re-saved as JPEG")
  rather than a mix of resizes, blurs and qualities.

Each edit's generator is seeded by (seed, the photograph's path, the kind), so a
photograph gets the same edits whether the whole list or the CI sample is judged. For an
edited copy the explanation grid's most suspicious cell is checked against the edit's mask
(``localisation``). Self-blending needs face landmarks and is not among the kinds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from veracity.corpus.heldout import HeldOutPhoto
from veracity.edits import DEFAULT_AREA, EDIT_KINDS, make_fake
from veracity.edits.regions import Mask, working_size
from veracity.errors import InvalidImageError
from veracity.evaluation.localisation import top_cell_touches, touching_share
from veracity.images import encode_jpeg, load_rgb
from veracity.inference.explanation import explain
from veracity.inference.predictor import Predictor, PreparedImage

# Every kind a photograph alone allows (self_blend needs a face's landmarks).
PHOTO_KINDS = tuple(name for name, kind in EDIT_KINDS.items() if not kind.needs_landmarks)
# The arms that show the photograph itself (truth: real); "edited" holds the fakes.
REAL_ARMS = ("untouched", "jpeg")


@dataclass(frozen=True)
class HeldOutOptions:
    """How the held-out images are made. ``max_side``: the working size's longest side."""

    jpeg_quality: int = 90
    max_side: int = 1920
    kinds: tuple[str, ...] = PHOTO_KINDS
    area: tuple[float, float] = DEFAULT_AREA
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in PHOTO_KINDS]
        if not self.kinds or unknown:
            raise ValueError(f"kinds must be a non-empty subset of {', '.join(PHOTO_KINDS)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.max_side < 64:
            raise ValueError(f"max_side must be at least 64 px, got {self.max_side}")


@dataclass(frozen=True)
class HeldOutItem:
    """One judged image. ``label`` is the truth; ``verdict`` is ``error`` when the image
    could not be made or read (``error`` says why). For edited copies: ``edited_share``,
    the share of the image the edit's mask covers; ``top_cell``, the explanation's most
    suspicious cell (row, col); ``touches``, whether it holds a pixel of the mask (None
    without a grid); ``cells_touching``, the share of the grid's cells that do (chance)."""

    source: str
    photo: str
    arm: str
    kind: str | None
    label: str
    width: int
    height: int
    verdict: str
    reasons: list[str] = field(default_factory=list)
    fake_prob: float = math.nan
    ood_score: float | None = None
    edited_share: float | None = None
    top_cell: tuple[int, int] | None = None
    touches: bool | None = None
    cells_touching: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Case:
    """An image to judge: its encoded bytes and what is known about it."""

    arm: str
    kind: str | None
    data: bytes
    mask: Mask | None = None


def judge_heldout(
    predictor: Predictor,
    photos: Sequence[HeldOutPhoto],
    root: Path,
    options: HeldOutOptions = HeldOutOptions(),
    *,
    donors: Sequence[HeldOutPhoto] | None = None,
    progress: bool = True,
) -> list[HeldOutItem]:
    """Judge every photograph under ``root`` (the held-out directory) in each arm.

    A splice's donor is the photograph after it in ``donors`` (default: ``photos``), so
    a run over part of a list can make the same splices as a run over all of it. A
    photograph that cannot be read yields ``error`` items for its arms instead of ending
    the run.

    Raises:
        ValueError: A photograph is not among ``donors``.
    """
    pool = list(donors or photos)
    where = {photo.entry.local_path: index for index, photo in enumerate(pool)}
    items: list[HeldOutItem] = []
    for photo in tqdm(photos, desc="held-out", unit="photo", disable=not progress):
        if photo.entry.local_path not in where:
            raise ValueError(f"{photo.entry.local_path} is not among the donors")
        donor = pool[(where[photo.entry.local_path] + 1) % len(pool)]
        try:
            cases = list(_cases(photo, donor, root, options))
        except (InvalidImageError, OSError, ValueError) as e:
            # Each arm still counts the photograph, as an error.
            message = getattr(e, "message", None) or str(e)
            items += [_failed(photo, arm, None, message) for arm in REAL_ARMS]
            items += [_failed(photo, "edited", kind, message) for kind in options.kinds]
            continue
        items += _judge(predictor, photo, cases)
    return items


def _cases(
    photo: HeldOutPhoto, donor: HeldOutPhoto, root: Path, options: HeldOutOptions
) -> Iterator[_Case]:
    path = root / photo.entry.local_path
    yield _Case("untouched", None, path.read_bytes())
    image = working_image(path, options.max_side)
    yield _Case("jpeg", None, encode_jpeg(Image.fromarray(image), options.jpeg_quality))
    donor_image = None
    for kind in options.kinds:
        if EDIT_KINDS[kind].needs_donor and donor_image is None:
            donor_image = working_image(root / donor.entry.local_path, options.max_side)
        rng = edit_generator(options.seed, photo.entry.local_path, kind)
        edit = make_fake(image, rng, kind, donor_image, area=options.area)
        yield _Case(
            "edited",
            kind,
            encode_jpeg(Image.fromarray(edit.image), options.jpeg_quality),
            edit.mask,
        )


def edit_generator(seed: int, photo: str, kind: str) -> np.random.Generator:
    """The generator of one photograph's edit of one kind: the same whichever other
    photographs are judged with it (CRC-32 is stable across runs, unlike ``hash``)."""
    return np.random.default_rng([seed, zlib.crc32(photo.encode()), zlib.crc32(kind.encode())])


def working_image(path: Path, max_side: int) -> np.ndarray:
    """The photograph upright as 8-bit RGB, shrunk (area) so its longest side is at most
    ``max_side``."""
    return working_size(np.asarray(load_rgb(path), dtype=np.uint8), max_side, 1)


def _judge(predictor: Predictor, photo: HeldOutPhoto, cases: list[_Case]) -> list[HeldOutItem]:
    items: list[HeldOutItem] = []
    ready: list[tuple[_Case, PreparedImage]] = []
    for case in cases:
        try:
            ready.append((case, predictor.prepare(case.data, robustness_check=False)))
        except InvalidImageError as e:
            items.append(_failed(photo, case.arm, case.kind, e.message))
    judged = predictor.predict_prepared([prepared for _, prepared in ready])
    for (case, prepared), (prediction, verdict) in zip(ready, judged, strict=True):
        top_cell, touches, share, chance = None, None, None, None
        if case.mask is not None:
            share = round(float(case.mask.mean()), 5)
            grid = explain(predictor.config, prediction, prepared.faces).grid
            if grid is not None:
                top_cell, touches = top_cell_touches(grid, case.mask)
                chance = round(touching_share(case.mask, (len(grid), len(grid[0]))), 4)
        items.append(
            HeldOutItem(
                source=photo.source,
                photo=photo.entry.local_path,
                arm=case.arm,
                kind=case.kind,
                label="fake" if case.arm == "edited" else "real",
                width=prepared.quality.width,
                height=prepared.quality.height,
                verdict=verdict.verdict,
                reasons=[r.code for r in verdict.reasons],
                fake_prob=prediction.fake_prob,
                ood_score=prediction.ood_score,
                edited_share=share,
                top_cell=top_cell,
                touches=touches,
                cells_touching=chance,
            )
        )
    return items


def _failed(photo: HeldOutPhoto, arm: str, kind: str | None, message: str) -> HeldOutItem:
    label = "fake" if arm == "edited" else "real"
    return HeldOutItem(
        source=photo.source,
        photo=photo.entry.local_path,
        arm=arm,
        kind=kind,
        label=label,
        width=0,
        height=0,
        verdict="error",
        error=message,
    )
