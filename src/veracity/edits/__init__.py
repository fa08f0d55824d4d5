"""Fakes made from real photographs, with masks, for training a detector on real media.

Each edit takes an 8-bit RGB image (H x W x 3) and a seeded ``numpy.random.Generator``
and returns an ``Edit``: the edited image, the boolean mask of the pixels it wrote, its
kind and the parameters it drew (the same generator state gives the same edit). Outside
the mask the edited image is bit-identical to the original; every changed pixel is inside
it (see ``regions``). Regions cover 3-15% of the image by default (``area``).

- ``splice``: a region of another photo, resampled, colour-matched; hard, feathered or
  Poisson-blended edges;
- ``copymove``: a region of the same image, turned and scaled, pasted elsewhere;
- ``inpaint``: a region removed by inpainting (Telea, Navier-Stokes);
- ``rerender``: a region through a lower resolution, smoothed or denoised, or re-compressed
  as JPEG on a shifted 8x8 grid;
- ``selfblend``: a face blended with a perturbed copy of itself (Self-Blended Images);
- ``kinds``: the registry and ``make_fake``;
- ``finish``: the resize, blur and encoding real and fake images alike go through;
- ``webvideo``: a still as ordinary web video (H.264, VP9), the edit's mask moved with the
  frames; not imported here, as it loads FFmpeg (training and the held-out evaluation use it).
"""

from veracity.edits.finish import (
    Finished,
    FinishOptions,
    FinishParams,
    apply_finish,
    draw_finish,
    finish,
)
from veracity.edits.kinds import EDIT_KINDS, EditKind, make_fake
from veracity.edits.regions import DEFAULT_AREA, MIN_SIDE, Edit

__all__ = [
    "DEFAULT_AREA",
    "EDIT_KINDS",
    "MIN_SIDE",
    "Edit",
    "EditKind",
    "FinishOptions",
    "FinishParams",
    "Finished",
    "apply_finish",
    "draw_finish",
    "finish",
    "make_fake",
]
