"""The held-out report's video arm: verdicts per codec and per edit kind, where an edited
clip's top segment lies, and the video goals as pass/fail lines.

The issue's goal is "ordinary H.264 and VP9 web video of a real scene: ``real``; the same
clip edited only between two timestamps: ``fake``, its top segment at those timestamps".
It names no share, so each clip is held to it:

- real clips answered ``real``: 100%;
- edited clips answered ``fake`` with the top segment at the edit: 100%. "At the edit"
  means the top segment's intersection over union with the edited interval is at least
  0.5, the usual bar for finding an event in time (THUMOS, ActivityNet); a segment that
  merely overlaps the edit is counted too, as ``overlapping``, but does not pass.

Rates are shares of the clips judged (an ``error`` clip is counted apart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from veracity.evaluation.goals import Goal, count_verdicts, pct
from veracity.evaluation.heldout_video import WEB_CRF, HeldOutClip, HeldOutVideoOptions

# An edited clip's top segment is at the edit from this intersection over union on.
AT_EDIT_IOU = 0.5


def timing(clips: Sequence[HeldOutClip]) -> dict[str, Any]:
    """Of the edited clips: how many are judged fake, whose top segment overlaps the edited
    interval, is at it (IoU >= ``AT_EDIT_IOU``; the goal, as a share of every judged
    clip), the mean IoU of the fakes' top segments, and the overlap of every clip with a
    segment whatever its verdict (how well the timeline points while few are called fake)."""
    judged = [c for c in clips if c.error is None]
    fakes = [c for c in judged if c.verdict == "fake"]
    overlapping = sum(1 for c in fakes if c.overlaps)
    at_edit = sum(1 for c in fakes if c.iou is not None and c.iou >= AT_EDIT_IOU)
    ious = [c.iou for c in fakes if c.iou is not None]
    segmented = [c for c in judged if c.top_segment is not None]
    return {
        "judged": len(judged),
        "judged_fake": len(fakes),
        "overlapping": overlapping,
        "overlap_rate": overlapping / len(fakes) if fakes else math.nan,
        "at_edit": at_edit,
        "at_edit_rate": at_edit / len(judged) if judged else math.nan,
        "mean_iou": sum(ious) / len(ious) if ious else math.nan,
        "with_segment": len(segmented),
        "overlap_rate_any_verdict": (
            sum(1 for c in segmented if c.overlaps) / len(segmented) if segmented else math.nan
        ),
    }


def _by(clips: Sequence[HeldOutClip], key: str) -> dict[str, list[HeldOutClip]]:
    groups: dict[str, list[HeldOutClip]] = {}
    for clip in clips:
        groups.setdefault(str(getattr(clip, key)), []).append(clip)
    return dict(sorted(groups.items()))


def video_section(clips: Sequence[HeldOutClip], options: HeldOutVideoOptions) -> dict[str, Any]:
    """The video arm as JSON-ready data (``items`` included)."""
    real = [c for c in clips if c.kind is None]
    edited = [c for c in clips if c.kind is not None]

    def counted(group: Sequence[HeldOutClip]) -> dict[str, Any]:
        return count_verdicts(group) | {"timing": timing(group)}

    return {
        "options": asdict(options) | {"crf": WEB_CRF, "edit_interval": options.edit_interval},
        "photographs": len({c.photo for c in clips}),
        "clips": len(clips),
        "real": {
            "overall": count_verdicts(real),
            "by_codec": {k: count_verdicts(g) for k, g in _by(real, "codec").items()},
        },
        "edited": {
            "overall": counted(edited),
            "by_codec": {k: counted(g) for k, g in _by(edited, "codec").items()},
            "by_kind": {k: counted(g) for k, g in _by(edited, "kind").items()},
        },
        "errors": [asdict(c) for c in clips if c.error is not None],
        "items": [asdict(c) for c in clips],
    }


def video_goals(video: dict[str, Any]) -> list[Goal]:
    """The video goals measured on ``video_section``'s data."""
    real = video["real"]["overall"]
    edited = video["edited"]["overall"]
    where = edited["timing"]
    return [
        Goal(
            "video_real",
            "web video of a real scene (H.264, VP9) answered real",
            real["real_rate"],
            1.0,
            at_most=False,
            detail=f"{real['real']} of {real['images']}; fake: {real['fake']}",
        ),
        Goal(
            "video_edit_found",
            f"edited clips answered fake with the top segment at the edit (IoU >= {AT_EDIT_IOU:g})",
            where["at_edit_rate"],
            1.0,
            at_most=False,
            detail=f"{where['at_edit']} of {where['judged']}; fake: {where['judged_fake']}, "
            f"top segment overlapping the edit: {where['overlapping']}",
        ),
    ]


def _real_row(name: str, counts: dict[str, Any]) -> str:
    rates = " ".join(pct(counts[f"{v}_rate"]) for v in ("real", "inconclusive", "fake"))
    return f"{name:<29}{counts['images']:>5}   {rates}"


def _edited_row(name: str, counts: dict[str, Any]) -> str:
    rates = " ".join(pct(counts[f"{v}_rate"]) for v in ("fake", "inconclusive", "real"))
    where = counts["timing"]
    iou = "    -" if math.isnan(where["mean_iou"]) else f"{where['mean_iou']:>5.2f}"
    return (
        f"{name:<29}{counts['images']:>5}   {rates}   {pct(where['overlap_rate'])}     "
        f"{pct(where['at_edit_rate'])}   {iou}"
    )


def video_summary_lines(video: dict[str, Any]) -> list[str]:
    """The video arm as plain-text table rows: real clips per codec, edited clips per codec
    and per edit kind (the goal lines are printed with the others)."""
    options = video["options"]
    start, end = options["edit_interval"]
    rule = options["rule"]
    crf = ", ".join(f"{codec} CRF {WEB_CRF[codec]}" for codec in options["codecs"])
    lines = [
        f"Held-out video: {video['clips']} clips of {video['photographs']} photograph(s), "
        f"{options['seconds']:g} s at {options['fps']} fps, at most "
        f"{options['max_size'][0]}x{options['max_size'][1]}, {crf}; edited clips show the "
        f"edit from {start:g} s to {end:g} s; judged as the service does "
        f"({options['plan']['count']} frames, {rule['method']}, a sustained run of "
        f"{rule['run']['min_frames']} fake frames over {rule['run']['min_duration_s']:g} s)",
        "",
        f"{'real clips (truth: real)':<29}{'n':>5}   real  inc fake",
    ]
    real = video["real"]
    lines += [_real_row(f"codec {k}", c) for k, c in real["by_codec"].items()]
    lines.append(_real_row("all", real["overall"]))
    edited = video["edited"]
    lines += [
        "",
        f"{'edited clips (truth: fake)':<29}{'n':>5}   fake  inc real   overlap   at edit   IoU",
    ]
    lines += [_edited_row(f"codec {k}", c) for k, c in edited["by_codec"].items()]
    lines += [_edited_row(f"kind {k}", c) for k, c in edited["by_kind"].items()]
    lines.append(_edited_row("all", edited["overall"]))
    lines += [
        "",
        "overlap: of the clips judged fake, the share whose top segment overlaps the edit; "
        f"at edit: of all, the share judged fake with the top segment's IoU >= {AT_EDIT_IOU:g} "
        "(the goal); IoU: the fakes' mean",
        "",
    ]
    if video["errors"]:
        lines += [f"{len(video['errors'])} clip(s) could not be judged: see report.json", ""]
    return lines
