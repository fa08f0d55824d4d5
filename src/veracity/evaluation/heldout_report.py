"""The held-out report: verdicts counted per source and per edit kind, where the edit is,
calibration, and the issue's goals as pass/fail lines with the numbers measured.

Rates are shares of the images judged (an ``error`` item is counted apart, never as a
verdict). The goals (issue 21), on the held-out sources only:

- photographs re-saved as JPEG: none ``fake``, at least 85% ``real``;
- edited copies (3-15% of the image): at least 75% ``fake``, at most 5% ``real``;
- edited copies judged ``fake``: the explanation's most suspicious cell touches the edit
  in at least 70%;
- web video of a real scene answered ``real``, and clips edited between two timestamps
  answered ``fake`` with the top segment at the edit (``heldout_video_report``; only when
  the run has a video arm);
- expected calibration error at most 0.05 on the re-saved photographs and the edited
  copies together (labels real and fake; the calibrated ``fake_prob``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from veracity.checkpoint import atomic_write
from veracity.evaluation.goals import Goal, count_verdicts, pct
from veracity.evaluation.heldout import REAL_ARMS, HeldOutItem, HeldOutOptions
from veracity.evaluation.heldout_video import HeldOutClip, HeldOutVideoOptions
from veracity.evaluation.heldout_video_report import (
    video_goals,
    video_section,
    video_summary_lines,
)
from veracity.evaluation.intervals import LEVEL, RESAMPLES, goal_intervals
from veracity.verdicts.calibration import expected_calibration_error, reliability_curve


def localisation(items: Iterable[HeldOutItem]) -> dict[str, Any]:
    """Of the edited copies judged fake: how many have a grid, and whose top cell touches
    (the goal), against chance (a cell drawn at random: the mean share of cells holding
    edited pixels); and the share over every edited copy with a grid, whatever its verdict
    (how well the grid points while few copies are called fake)."""
    gridded = [i for i in items if i.error is None and i.touches is not None]
    fakes = [i for i in gridded if i.verdict == "fake"]
    touching = sum(1 for i in fakes if i.touches)
    touching_any = sum(1 for i in gridded if i.touches)
    chance = [i.cells_touching for i in fakes if i.cells_touching is not None]
    return {
        "judged_fake_with_grid": len(fakes),
        "touching": touching,
        "touch_rate": touching / len(fakes) if fakes else math.nan,
        "chance_rate": sum(chance) / len(chance) if chance else math.nan,
        "with_grid": len(gridded),
        "touch_rate_any_verdict": touching_any / len(gridded) if gridded else math.nan,
    }


def _grouped(items: Sequence[HeldOutItem], key: str) -> dict[str, list[HeldOutItem]]:
    groups: dict[str, list[HeldOutItem]] = {}
    for item in items:
        groups.setdefault(str(getattr(item, key)), []).append(item)
    return groups


def _arm(items: Sequence[HeldOutItem], arm: str) -> dict[str, Any]:
    mine = [i for i in items if i.arm == arm]
    return {
        "overall": count_verdicts(mine),
        "by_source": {s: count_verdicts(g) for s, g in _grouped(mine, "source").items()},
    }


def _edited(items: Sequence[HeldOutItem]) -> dict[str, Any]:
    edited = [i for i in items if i.arm == "edited"]
    by_kind = _grouped(edited, "kind")
    return {
        "overall": count_verdicts(edited) | {"localisation": localisation(edited)},
        "by_kind": {
            k: count_verdicts(g) | {"localisation": localisation(g)} for k, g in by_kind.items()
        },
        "by_source": {
            s: count_verdicts(g) | {"localisation": localisation(g)}
            for s, g in _grouped(edited, "source").items()
        },
        "by_kind_and_source": {
            k: {s: count_verdicts(sg) for s, sg in _grouped(g, "source").items()}
            for k, g in by_kind.items()
        },
    }


def _calibration(items: Sequence[HeldOutItem]) -> dict[str, Any]:
    chosen = [i for i in items if i.error is None and i.arm in ("jpeg", "edited")]
    probs = np.array([i.fake_prob for i in chosen], dtype=np.float64)
    labels = np.array([1.0 if i.label == "fake" else 0.0 for i in chosen])
    real = labels == 0
    return {
        "images": len(chosen),
        "real": int(real.sum()),
        "fake": int((~real).sum()),
        "ece": expected_calibration_error(probs, labels),
        # The issue words this goal "on held-out real media": the re-saved photographs alone.
        "ece_photos_only": expected_calibration_error(probs[real], labels[real]),
        "reliability": reliability_curve(probs, labels),
    }


def goals(report: dict[str, Any]) -> list[Goal]:
    """The issue's goals measured on ``report``, in the issue's order (the video goals only
    when the report has a video arm), each image goal with its interval when the report
    has them."""
    intervals = report.get("intervals", {}).get("goals", {})
    return [
        replace(goal, interval=tuple(intervals[goal.name])) if goal.name in intervals else goal
        for goal in _goals(report)
    ]


def _goals(report: dict[str, Any]) -> list[Goal]:
    photos = report["photos"]["jpeg"]["overall"]
    edited = report["edited"]["overall"]
    where = edited["localisation"]
    calibration = report["calibration"]
    n, e = photos["images"], edited["images"]
    video = video_goals(report["video"]) if "video" in report else []
    return [
        Goal(
            "photos_never_fake",
            "photographs re-saved as JPEG answered fake",
            photos["fake_rate"],
            0.0,
            at_most=True,
            detail=f"{photos['fake']} of {n}",
        ),
        Goal(
            "photos_real",
            "photographs re-saved as JPEG answered real",
            photos["real_rate"],
            0.85,
            at_most=False,
            detail=f"{photos['real']} of {n}",
        ),
        Goal(
            "edited_fake",
            "edited copies answered fake",
            edited["fake_rate"],
            0.75,
            at_most=False,
            detail=f"{edited['fake']} of {e}",
        ),
        Goal(
            "edited_real",
            "edited copies answered real",
            edited["real_rate"],
            0.05,
            at_most=True,
            detail=f"{edited['real']} of {e}",
        ),
        Goal(
            "edit_located",
            "edited copies judged fake whose most suspicious cell touches the edit",
            where["touch_rate"],
            0.70,
            at_most=False,
            detail=f"{where['touching']} of {where['judged_fake_with_grid']} with a grid; "
            f"a random cell: {pct(where['chance_rate']).strip()}",
        ),
        *video,
        Goal(
            "calibration",
            "expected calibration error, re-saved photographs and edited copies",
            calibration["ece"],
            0.05,
            at_most=True,
            detail=f"{calibration['real']} real, {calibration['fake']} edited",
            percent=False,
        ),
    ]


def build_heldout_report(
    items: Sequence[HeldOutItem],
    *,
    checkpoint: dict[str, Any],
    options: HeldOutOptions,
    clips: Sequence[HeldOutClip] | None = None,
    video_options: HeldOutVideoOptions | None = None,
) -> dict[str, Any]:
    """Everything the held-out run measured, as JSON-ready data (``items`` included); with
    ``clips`` (made with ``video_options``), the video arm too."""
    report: dict[str, Any] = {
        "checkpoint": checkpoint,
        "options": asdict(options),
        "photographs": len({i.photo for i in items}),
        "sources": sorted({i.source for i in items}),
        "photos": {arm: _arm(items, arm) for arm in REAL_ARMS},
        "edited": _edited(items),
        "calibration": _calibration(items),
        "errors": [asdict(i) for i in items if i.error is not None],
        "items": [asdict(i) for i in items],
    }
    if clips is not None:
        report["video"] = video_section(clips, video_options or HeldOutVideoOptions())
    report["intervals"] = {
        "level": LEVEL,
        "resamples": RESAMPLES,
        "resampled": "photographs (each with all its items)",
        "goals": {name: list(bounds) for name, bounds in goal_intervals(items).items()},
    }
    report["goals"] = [asdict(g) | {"passed": g.passed, "line": g.line()} for g in goals(report)]
    return report


def write_heldout_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """``report.json`` and the PNG plots into ``out_dir``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=True) + "\n"
    atomic_write(out_dir / "report.json", lambda p: p.write_text(text, encoding="utf-8"))
    from veracity.evaluation.heldout_plots import write_heldout_plots

    return [out_dir / "report.json", *write_heldout_plots(report, out_dir)]


def _photo_row(name: str, untouched: dict[str, Any], jpeg: dict[str, Any]) -> str:
    order = ("real", "inconclusive", "fake")
    cells = [pct(counts[f"{v}_rate"]) for counts in (untouched, jpeg) for v in order]
    return f"{name:<29}{jpeg['images']:>5}   " + " ".join(cells[:3]) + "   " + " ".join(cells[3:])


def _edited_row(name: str, counts: dict[str, Any]) -> str:
    rates = " ".join(pct(counts[f"{v}_rate"]) for v in ("fake", "inconclusive", "real"))
    touch = counts["localisation"]["touch_rate"]
    return f"{name:<29}{counts['images']:>5}   {rates}   {pct(touch)}"


def format_summary(report: dict[str, Any]) -> str:
    """The report as a plain-text table: photographs per source (the file as shipped and
    re-saved as JPEG), edited copies per kind and per source, the video arm's clips per
    codec and per kind when there is one, then the goal lines."""
    options = report["options"]
    untouched, jpeg = report["photos"]["untouched"], report["photos"]["jpeg"]
    edited = report["edited"]
    lines = [
        f"Held-out photographs: {report['photographs']} from {len(report['sources'])} "
        f"source(s); re-saved and edited copies as JPEG {options['jpeg_quality']}, longest "
        f"side at most {options['max_side']} px",
        "",
        f"{'photographs (truth: real)':<29}{'n':>5}   {'as shipped':<19}   re-saved as JPEG",
        f"{'':<29}{'':>5}   {'real  inc fake':>14}   {'real  inc fake':>14}",
    ]
    nothing = count_verdicts([])
    for source in sorted(set(untouched["by_source"]) | set(jpeg["by_source"])):
        shipped = untouched["by_source"].get(source, nothing)
        lines.append(_photo_row(source, shipped, jpeg["by_source"].get(source, nothing)))
    lines.append(_photo_row("all", untouched["overall"], jpeg["overall"]))
    lines += ["", f"{'edited copies (truth: fake)':<29}{'n':>5}   fake  inc real   touch"]
    for kind in sorted(edited["by_kind"]):
        lines.append(_edited_row(f"kind {kind}", edited["by_kind"][kind]))
    for source in sorted(edited["by_source"]):
        lines.append(_edited_row(source, edited["by_source"][source]))
    lines.append(_edited_row("all", edited["overall"]))
    chance = pct(edited["overall"]["localisation"]["chance_rate"]).strip()
    lines += [
        "",
        "touch: of the copies judged fake, the share whose most suspicious cell holds "
        f"edited pixels (a cell drawn at random: {chance})",
        "",
    ]
    if "video" in report:
        lines += video_summary_lines(report["video"])
    lines += [goal["line"] for goal in report["goals"]]
    errors = len(report["errors"])
    if errors:
        lines.append(f"{errors} image(s) could not be judged: see report.json's errors")
    return "\n".join(lines)
