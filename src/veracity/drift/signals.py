"""What drift is measured on: the signals one answer carries, and the bins they fall in.

An ``Observation`` is read from an image answer as the service stores it (``from_answer``),
so a live window is rebuilt from the results store by any replica, and the reference
profile is built from the same kind of answers on the calibration data. Videos are not
scored: their answers are per clip, and no reference of clips exists yet. Continuous signals are
binned at the reference's deciles (each bin then holds a tenth of the reference, which
keeps the population stability index sensitive where the data is); categorical ones by
their value, with ``other`` for a value the reference never had.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

SignalKind = Literal["quantile", "category"]
MISSING = "missing"
OTHER = "other"
NO_REASON = "none"
QUANTILE_BINS = 10
MAX_SIDE = 1_000_000  # beyond any upload the service accepts: a stored value past it is junk
# Reasons that come from an upload's content credentials, not from the model.
PROVENANCE_REASONS = frozenset({"declared_ai_generated", "provenance_invalid"})

# JPEG quality in the bands that matter to a forensic model: below 50 the quality gate
# answers inconclusive, 70-90 is what platforms re-encode to, 95 and up is near-original.
_JPEG_BANDS = ((50, "q<50"), (70, "q50-69"), (85, "q70-84"), (95, "q85-94"), (101, "q95+"))


@dataclass(frozen=True)
class Observation:
    """One image answer, as drift sees it."""

    fake_prob: float | None
    verdict: str
    reasons: tuple[str, ...]
    ood_score: float | None
    pixels: int | None
    jpeg_quality: int | None  # None: not a JPEG
    media_type: str

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any], media_type: str) -> Observation:
        """Read an ``/infer`` answer (or a batch item's) in its stored JSON form. Whatever
        is missing or malformed is read as missing, never as an error: one odd row must
        not stop the monitor.

        The model's own verdict (``model_verdict``) is read, and content credentials'
        reasons are left out: the reference was judged without credentials, and a signed
        upload is not a sign that the model drifted.
        """
        quality = answer.get("quality")
        quality = quality if isinstance(quality, Mapping) else {}
        jpeg = _number(quality.get("jpeg_quality"))
        verdict = answer.get("model_verdict") or answer.get("verdict")
        return cls(
            fake_prob=_number(answer.get("fake_prob")),
            verdict=verdict if isinstance(verdict, str) else MISSING,
            reasons=_reason_codes(answer.get("reasons")),
            ood_score=_number(answer.get("ood_score")),
            pixels=_pixels(quality.get("width"), quality.get("height")),
            jpeg_quality=int(jpeg) if jpeg is not None and 0 <= jpeg <= 100 else None,
            media_type=str(media_type)[:100],
        )


def _reason_codes(reasons: object) -> tuple[str, ...]:
    if not isinstance(reasons, list):
        return ()
    codes = (r.get("code") if isinstance(r, Mapping) else r for r in reasons)
    return tuple(c[:100] for c in codes if isinstance(c, str) and c not in PROVENANCE_REASONS)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _pixels(width: object, height: object) -> int | None:
    w, h = _number(width), _number(height)
    if w is None or h is None or not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        return None
    return int(w) * int(h)


def _jpeg_band(quality: int | None) -> str:
    if quality is None:
        return "not_jpeg"
    return next((label for bound, label in _JPEG_BANDS if quality < bound), _JPEG_BANDS[-1][1])


@dataclass(frozen=True)
class Signal:
    """One signal: its name, how it is binned, and what it reads from an observation."""

    name: str
    kind: SignalKind
    description: str
    # Categories a profile always has a bin for, seen in the reference or not, so a live
    # share of them is shown by name rather than as "other".
    categories: tuple[str, ...] = ()

    def values(self, observation: Observation) -> list[str | float | None]:
        """What ``observation`` contributes: one value, or for reasons one per reason."""
        o = observation
        match self.name:
            case "fake_prob":
                return [o.fake_prob]
            case "ood_score":
                return [o.ood_score]
            case "pixels":  # on a log scale: 720p and 4K differ by a factor, not a sum
                return [math.log10(o.pixels) if o.pixels else None]
            case "verdict":
                return [o.verdict]
            case "reasons":
                return list(o.reasons) or [NO_REASON]
            case "jpeg_quality":
                return [_jpeg_band(o.jpeg_quality)]
            case "media_type":
                return [o.media_type]
        raise AssertionError(f"unknown signal {self.name}")


SIGNALS: tuple[Signal, ...] = (
    Signal("fake_prob", "quantile", "calibrated probability of manipulation"),
    Signal("verdict", "category", "real, fake or inconclusive", ("fake", "inconclusive", "real")),
    Signal("reasons", "category", "reason codes, each answer counting each of its reasons"),
    Signal("ood_score", "quantile", "out-of-distribution score"),
    Signal("pixels", "quantile", "pixels per image or frame, log10"),
    Signal(
        "jpeg_quality",
        "category",
        "estimated JPEG quality, in bands",
        (*(label for _, label in _JPEG_BANDS), "not_jpeg"),
    ),
    Signal("media_type", "category", "the upload's media type"),
)


def quantile_edges(values: Sequence[float], bins: int = QUANTILE_BINS) -> list[float]:
    """Inner edges at the quantiles of ``values``, repeated edges merged (ties)."""
    if not values:
        return []
    inner = np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return sorted({round(float(e), 6) for e in inner})


def quantile_labels(edges: Sequence[float]) -> list[str]:
    return [f"b{i}" for i in range(len(edges) + 1)] + [MISSING]


def bin_values(
    signal: Signal,
    observations: Iterable[Observation],
    *,
    edges: Sequence[float] = (),
    labels: Sequence[str] = (),
) -> Counter[str]:
    """Count ``observations`` into ``signal``'s bins: quantile bins of ``edges``, or the
    category ``labels`` (a value outside them counts as ``other``)."""
    counts: Counter[str] = Counter()
    known = set(labels)
    bounds = np.asarray(edges, dtype=np.float64)
    for observation in observations:
        for value in signal.values(observation):
            if signal.kind == "quantile":
                if value is None or isinstance(value, str):
                    counts[MISSING] += 1
                else:
                    counts[f"b{int(np.searchsorted(bounds, value, side='right'))}"] += 1
            else:
                label = str(value)
                counts[label if not known or label in known else OTHER] += 1
    return counts
