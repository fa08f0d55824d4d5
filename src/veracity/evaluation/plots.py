"""The report's plots, drawn with matplotlib's headless Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only. Set before pyplot is imported.

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from veracity.evaluation.measures import VERDICTS, roc_curve


def save_figure(figure: Figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` and free it (pyplot keeps every open figure)."""
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _roc(report: dict[str, Any], out: Path) -> Path:
    items = [i for i in report["items"] if i["error"] is None]
    labels = np.array([1.0 if i["label"] == "fake" else 0.0 for i in items])
    figure, ax = plt.subplots(figsize=(5, 5))
    if len(np.unique(labels)) == 2:
        fpr, tpr = roc_curve(np.array([i["fake_prob"] for i in items]), labels)
        ax.plot(fpr, tpr, label=f"AUC {report['overall'].get('roc_auc', float('nan')):.4f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(
        xlabel="false positive rate (real called fake)",
        ylabel="true positive rate",
        title="ROC curve (calibrated fake_prob)",
    )
    ax.legend(loc="lower right")
    return save_figure(figure, out / "roc.png")


def draw_reliability(ax: Axes, rows: list[dict[str, Any]]) -> None:
    """A reliability diagram on ``ax``: each bin's observed share fake against its mean
    predicted P(fake), with the diagonal a calibrated model follows."""
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    if rows:
        ax.bar(
            [r["bin_low"] for r in rows],
            [r["fraction_fake"] for r in rows],
            width=0.1,
            align="edge",
            alpha=0.6,
            edgecolor="black",
        )
        ax.plot([r["mean_predicted"] for r in rows], [r["fraction_fake"] for r in rows], "o-")


def _reliability(report: dict[str, Any], out: Path) -> Path:
    figure, axes = plt.subplots(1, 2, figsize=(10, 5), sharey=True)
    overall = report["overall"]
    for ax, key, title, ece in (
        (axes[0], "before_calibration", "before calibration", "ece_before_calibration"),
        (axes[1], "after_calibration", "after calibration", "ece_after_calibration"),
    ):
        draw_reliability(ax, report["reliability"][key])
        ax.set(
            xlabel="predicted P(fake)", title=f"{title} (ECE {overall.get(ece, float('nan')):.3f})"
        )
    axes[0].set_ylabel("observed fraction fake")
    return save_figure(figure, out / "reliability.png")


def _grouped(report: dict[str, Any], key: str, title: str, out: Path) -> Path:
    groups = report[key]
    names = list(groups)
    correct = [groups[n].get("correct_rate", 0.0) for n in names]
    abstained = [groups[n].get("inconclusive_rate", 0.0) for n in names]
    x = np.arange(len(names))
    figure, ax = plt.subplots(figsize=(max(5, 1.2 * len(names) + 2), 4))
    ax.bar(x - 0.2, correct, width=0.4, label="correct verdict")
    ax.bar(x + 0.2, abstained, width=0.4, label="inconclusive")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.axhline(0.95, linestyle=":", color="green")
    ax.axhline(0.05, linestyle=":", color="orange")
    ax.set(title=title, ylabel="fraction of images")
    ax.legend(loc="center right")
    return save_figure(figure, out / f"{key}.png")


def _confusion(report: dict[str, Any], out: Path) -> Path:
    confusion = report["overall"].get("confusion", {})
    rows = ["real", "fake"]
    matrix = np.array([[confusion.get(r, {}).get(v, 0) for v in VERDICTS] for r in rows])
    figure, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center")
    ax.set_xticks(range(len(VERDICTS)), VERDICTS)
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="verdict", ylabel="truth", title="confusion matrix")
    return save_figure(figure, out / "confusion.png")


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    return [
        _roc(report, out),
        _reliability(report, out),
        _grouped(report, "by_size", "verdicts by longer side (px)", out),
        _grouped(report, "by_jpeg_quality", "verdicts by estimated JPEG quality", out),
        _confusion(report, out),
    ]
