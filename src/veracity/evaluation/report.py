"""``veracity evaluate``: verdicts on a labelled dataset, summarised and plotted.

Every image goes through the predictor exactly as an upload does (decode, quality gates,
patches, calibration, out-of-distribution gate, operating points), so the report measures
the service's answers, not a bare classifier. Figures are grouped by the image's longer side
and by its estimated JPEG quality (``png`` for lossless files), because a verdict that holds
at one size or compression and not another is what this report exists to catch.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from veracity.checkpoint import atomic_write
from veracity.errors import InvalidImageError
from veracity.evaluation.measures import VERDICTS, roc_auc
from veracity.inference.predictor import Predictor, PreparedImage
from veracity.verdicts.calibration import expected_calibration_error, reliability_curve

LABELS = ("real", "fake")
# Longer-side buckets: (upper bound inclusive, name).
SIZE_BUCKETS = ((160, "<=160"), (320, "161-320"), (640, "321-640"), (1280, "641-1280"))
QUALITY_BUCKETS = ((49, "<50"), (69, "50-69"), (79, "70-79"), (89, "80-89"), (100, "90-100"))


@dataclass(frozen=True)
class ItemResult:
    path: str
    label: str  # the truth
    width: int
    height: int
    jpeg_quality: int | None
    fake_prob: float
    raw_fake_prob: float
    verdict: str
    reasons: list[str]
    ood_score: float | None
    error: str | None = None

    @property
    def correct(self) -> bool:
        return self.verdict == self.label


def size_bucket(width: int, height: int) -> str:
    side = max(width, height)
    for bound, name in SIZE_BUCKETS:
        if side <= bound:
            return name
    return ">1280"


def quality_bucket(quality: int | None) -> str:
    if quality is None:
        return "png"
    return next(name for bound, name in QUALITY_BUCKETS if quality <= bound)


def evaluate_items(
    predictor: Predictor,
    samples: Sequence[tuple[Path, str]],
    *,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "evaluate",
) -> list[ItemResult]:
    """Score ``(path, true label)`` pairs with the predictor's full verdict pipeline.

    Unreadable files are kept as results with an ``error`` (and verdict ``error``), so a
    broken file shows in the report instead of aborting it.
    """
    results: list[ItemResult] = []
    bar = tqdm(total=len(samples), desc=desc, unit="image", disable=not progress)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        prepared: list[tuple[Path, str, PreparedImage]] = []
        for path, label in chunk:
            try:
                prepared.append((path, label, predictor.prepare(path, robustness_check=False)))
            except InvalidImageError as e:
                results.append(
                    ItemResult(
                        str(path),
                        label,
                        0,
                        0,
                        None,
                        math.nan,
                        math.nan,
                        "error",
                        [],
                        None,
                        e.message,
                    )
                )
        judged = predictor.predict_prepared([p for _, _, p in prepared])
        for (path, label, item), (prediction, verdict) in zip(prepared, judged, strict=True):
            results.append(
                ItemResult(
                    path=str(path),
                    label=label,
                    width=item.quality.width,
                    height=item.quality.height,
                    jpeg_quality=item.quality.jpeg_quality,
                    fake_prob=prediction.fake_prob,
                    raw_fake_prob=prediction.raw_fake_prob,
                    verdict=verdict.verdict,
                    reasons=[r.code for r in verdict.reasons],
                    ood_score=prediction.ood_score,
                )
            )
        bar.update(len(chunk))
    bar.close()
    return results


def summarise(results: Iterable[ItemResult]) -> dict[str, Any]:
    """Counts and rates of one group of results."""
    items = [r for r in results if r.error is None]
    n = len(items)
    if n == 0:
        return {"images": 0}
    decided = [r for r in items if r.verdict != "inconclusive"]
    confusion = {
        label: {v: sum(1 for r in items if r.label == label and r.verdict == v) for v in VERDICTS}
        for label in LABELS
    }
    labels = np.array([1.0 if r.label == "fake" else 0.0 for r in items])
    calibrated = np.array([r.fake_prob for r in items])
    raw = np.array([r.raw_fake_prob for r in items])
    summary: dict[str, Any] = {
        "images": n,
        "correct_rate": sum(r.correct for r in items) / n,
        "inconclusive_rate": (n - len(decided)) / n,
        "wrong_rate": sum(1 for r in decided if not r.correct) / n,
        "accuracy_when_decided": (
            sum(r.correct for r in decided) / len(decided) if decided else math.nan
        ),
        "confusion": confusion,
        "reasons": dict(Counter(code for r in items for code in r.reasons)),
    }
    if len(np.unique(labels)) == 2:
        summary |= {
            "roc_auc": roc_auc(calibrated, labels),
            "ece_before_calibration": expected_calibration_error(raw, labels),
            "ece_after_calibration": expected_calibration_error(calibrated, labels),
        }
    return summary


def build_report(
    results: list[ItemResult],
    *,
    checkpoint: dict[str, Any],
    photos: list[ItemResult] | None = None,
) -> dict[str, Any]:
    valid = [r for r in results if r.error is None]
    by_size: dict[str, list[ItemResult]] = {}
    by_quality: dict[str, list[ItemResult]] = {}
    for r in valid:
        by_size.setdefault(size_bucket(r.width, r.height), []).append(r)
        by_quality.setdefault(quality_bucket(r.jpeg_quality), []).append(r)
    labels = np.array([1.0 if r.label == "fake" else 0.0 for r in valid])
    report: dict[str, Any] = {
        "checkpoint": checkpoint,
        "overall": summarise(valid),
        "by_size": {k: summarise(by_size[k]) for k in _ordered(by_size, SIZE_BUCKETS)},
        "by_jpeg_quality": {
            k: summarise(by_quality[k]) for k in _ordered(by_quality, QUALITY_BUCKETS, "png")
        },
        "reliability": {
            "before_calibration": reliability_curve(
                np.array([r.raw_fake_prob for r in valid]), labels
            ),
            "after_calibration": reliability_curve(np.array([r.fake_prob for r in valid]), labels),
        },
        "errors": [{"path": r.path, "error": r.error} for r in results if r.error],
        "items": [asdict(r) for r in results],
    }
    if photos is not None:
        report["natural_photographs"] = {
            "summary": summarise(photos),
            "answered_fake": [r.path for r in photos if r.verdict == "fake"],
            "items": [asdict(r) for r in photos],
        }
    return report


def _ordered(
    groups: dict[str, list[ItemResult]], buckets: tuple[tuple[int, str], ...], first: str = ""
) -> list[str]:
    names = [first] if first else []
    names += [name for _, name in buckets] + [">1280"]
    return [n for n in names if n in groups]


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """``report.json`` and the PNG plots into ``out_dir``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=True) + "\n"
    atomic_write(out_dir / "report.json", lambda p: p.write_text(text, encoding="utf-8"))
    from veracity.evaluation.plots import write_plots

    return [out_dir / "report.json", *write_plots(report, out_dir)]
