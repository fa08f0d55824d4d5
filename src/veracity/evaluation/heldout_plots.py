"""The held-out report's plots: verdict shares per source and per edit kind, the video
arm's per codec, and the reliability diagram, drawn with matplotlib's headless Agg backend
(as ``plots``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only. Set before pyplot is imported.

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from veracity.evaluation.plots import draw_reliability, save_figure

# Blue real, grey inconclusive, red fake: the explanation overlay's ends of the ramp.
COLOURS = {"real": "#313695", "inconclusive": "#bdbdbd", "fake": "#a50026"}


def _stacked(ax: Axes, groups: dict[str, dict[str, Any]], order: tuple[str, ...]) -> None:
    """One horizontal bar per group, split into the verdicts' shares."""
    names = list(groups)
    y = np.arange(len(names))
    left = np.zeros(len(names))
    for verdict in order:
        shares = np.array([np.nan_to_num(groups[n][f"{verdict}_rate"]) for n in names])
        ax.barh(y, shares, left=left, color=COLOURS[verdict], label=verdict)
        left += shares
    ax.set_yticks(y, [f"{n} ({groups[n]['images']})" for n in names])
    if not ax.yaxis_inverted():  # shared y axes: inverting twice would undo it
        ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of images")


def _photos(report: dict[str, Any], out: Path) -> Path:
    arms = (("untouched", "as shipped"), ("jpeg", "re-saved as JPEG"))
    count = len(report["photos"]["jpeg"]["by_source"]) + 1
    figure, axes = plt.subplots(1, 2, figsize=(12, 2.0 + 0.45 * count), sharey=True)
    for ax, (arm, title) in zip(axes, arms, strict=True):
        data = report["photos"][arm]
        groups = dict(sorted(data["by_source"].items())) | {"all": data["overall"]}
        _stacked(ax, groups, ("real", "inconclusive", "fake"))
        ax.axvline(0.85, linestyle=":", color="green", label="goal: 85% real")
        ax.set_title(f"photographs {title} (truth: real)")
    # Below the axes, so it never hides a bar.
    axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, fontsize=8)
    return save_figure(figure, out / "heldout_photos.png")


def _edited(report: dict[str, Any], key: str, title: str, out: Path) -> Path:
    edited = report["edited"]
    groups = dict(sorted(edited[key].items())) | {"all": edited["overall"]}
    figure, ax = plt.subplots(figsize=(8, 2.2 + 0.45 * len(groups)))
    _stacked(ax, groups, ("fake", "inconclusive", "real"))
    touch = [groups[n]["localisation"]["touch_rate"] for n in groups]
    ax.plot(touch, np.arange(len(groups)), "kD", label="top cell touches the edit")
    ax.axvline(0.75, linestyle=":", color="green", label="goal: 75% fake")
    ax.set_title(f"edited copies {title} (truth: fake)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8)
    return save_figure(figure, out / f"heldout_edited_{key}.png")


def _reliability(report: dict[str, Any], out: Path) -> Path:
    calibration = report["calibration"]
    rows = calibration["reliability"]
    figure, ax = plt.subplots(figsize=(5, 5))
    draw_reliability(ax, rows)
    ax.set(
        xlabel="predicted P(fake)",
        ylabel="observed fraction edited",
        title=f"held-out reliability (ECE {calibration['ece']:.3f}; "
        f"{calibration['real']} real, {calibration['fake']} edited)",
    )
    return save_figure(figure, out / "heldout_reliability.png")


def write_video_plot(video: dict[str, Any], out: Path) -> Path:
    """``heldout_video.png``: the video arm's verdict shares per codec, real and edited."""
    real, edited = video["real"], video["edited"]
    figure, axes = plt.subplots(1, 2, figsize=(12, 2.4 + 0.45 * len(real["by_codec"])))
    _stacked(axes[0], real["by_codec"] | {"all": real["overall"]}, ("real", "inconclusive", "fake"))
    axes[0].set_title("real clips per codec (truth: real)")
    groups = edited["by_codec"] | {"all": edited["overall"]}
    _stacked(axes[1], groups, ("fake", "inconclusive", "real"))
    where = [g["timing"]["at_edit_rate"] for g in groups.values()]
    axes[1].plot(where, np.arange(len(groups)), "kD", label="fake, top segment at the edit")
    axes[1].set_title("clips edited between two timestamps per codec (truth: fake)")
    for ax in axes:
        ax.set_xlabel("share of clips")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4, fontsize=8)
    return save_figure(figure, out / "heldout_video.png")


def write_heldout_plots(report: dict[str, Any], out: Path) -> list[Path]:
    written = [
        _photos(report, out),
        _edited(report, "by_kind", "per edit kind", out),
        _edited(report, "by_source", "per source", out),
        _reliability(report, out),
    ]
    if "video" in report:
        written.append(write_video_plot(report["video"], out))
    return written
