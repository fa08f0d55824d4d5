"""The edit kinds by name, and ``make_fake``: one way in for the training pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from veracity.edits.copymove import copy_move
from veracity.edits.inpaint import inpaint
from veracity.edits.regions import DEFAULT_AREA, Edit, Image, check_area, check_image
from veracity.edits.rerender import low_resolution, recompress, smooth
from veracity.edits.selfblend import self_blend
from veracity.edits.splice import splice


@dataclass(frozen=True)
class Inputs:
    """What an edit may need besides the image: a donor photo, face landmarks, the area."""

    donor: Image | None
    landmarks: npt.ArrayLike | None
    area: tuple[float, float]


@dataclass(frozen=True)
class EditKind:
    name: str
    run: Callable[[Image, np.random.Generator, Inputs], Edit]
    needs_donor: bool = False
    needs_landmarks: bool = False

    def available(self, inputs: Inputs) -> bool:
        return (not self.needs_donor or inputs.donor is not None) and (
            not self.needs_landmarks or inputs.landmarks is not None
        )


def _splice(image: Image, rng: np.random.Generator, inputs: Inputs) -> Edit:
    assert inputs.donor is not None  # EditKind.available checked it
    return splice(image, inputs.donor, rng, area=inputs.area)


def _self_blend(image: Image, rng: np.random.Generator, inputs: Inputs) -> Edit:
    assert inputs.landmarks is not None  # EditKind.available checked it
    return self_blend(image, inputs.landmarks, rng)


EDIT_KINDS: dict[str, EditKind] = {
    kind.name: kind
    for kind in (
        EditKind("splice", _splice, needs_donor=True),
        EditKind("copy_move", lambda image, rng, inputs: copy_move(image, rng, area=inputs.area)),
        EditKind("inpaint", lambda image, rng, inputs: inpaint(image, rng, area=inputs.area)),
        EditKind(
            "low_resolution",
            lambda image, rng, inputs: low_resolution(image, rng, area=inputs.area),
        ),
        EditKind("smooth", lambda image, rng, inputs: smooth(image, rng, area=inputs.area)),
        EditKind("recompress", lambda image, rng, inputs: recompress(image, rng, area=inputs.area)),
        EditKind("self_blend", _self_blend, needs_landmarks=True),
    )
}


def make_fake(
    image: Image,
    rng: np.random.Generator,
    kind: str | None = None,
    donor: Image | None = None,
    landmarks: npt.ArrayLike | None = None,
    *,
    area: tuple[float, float] = DEFAULT_AREA,
) -> Edit:
    """An edited copy of ``image`` with the mask of the pixels the edit wrote.

    Args:
        kind: a name in ``EDIT_KINDS``; None draws one of those the inputs allow (splice
            needs ``donor``, self_blend needs ``landmarks``).
        donor: another photograph, for splice.
        landmarks: the face's landmarks (N x 2, x then y; 5 or a dense set), for self_blend.
        area: the share of the image an edit covers, drawn uniformly (self_blend: the face).

    Raises:
        ValueError: an unknown kind, a kind whose input is missing, an image too small.
    """
    check_image(image)
    inputs = Inputs(donor=donor, landmarks=landmarks, area=check_area(area))
    if kind is None:
        names = [name for name, entry in EDIT_KINDS.items() if entry.available(inputs)]
        kind = names[int(rng.integers(len(names)))]
    entry = EDIT_KINDS.get(kind)
    if entry is None:
        raise ValueError(f"unknown edit kind {kind!r}; known: {', '.join(EDIT_KINDS)}")
    if not entry.available(inputs):
        needed = "donor" if entry.needs_donor else "landmarks"
        raise ValueError(f"edit kind {kind!r} needs {needed}")
    return entry.run(image, rng, inputs)
