"""``veracity drift-report``'s plots: for each model version, every signal's share per bin
in the window beside the reference's, drawn with matplotlib's headless Agg backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only. Set before pyplot is imported.

import matplotlib.pyplot as plt
import numpy as np

from veracity.drift.report import VersionDriftEntry

_COLUMNS = 3


def plot_version(entry: VersionDriftEntry, path: Path) -> None:
    """One panel per signal: reference and live shares per bin, the score in the title."""
    signals = [s for s in entry.signals if s.reference is not None or s.live is not None]
    rows = max(1, -(-len(signals) // _COLUMNS))
    fig, axes = plt.subplots(rows, _COLUMNS, figsize=(5 * _COLUMNS, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(signals) :]:
        ax.axis("off")
    for ax, signal in zip(axes.flat, signals, strict=False):
        reference, live = signal.reference or {}, signal.live or {}
        labels = [label for label in reference if reference[label] or live.get(label)]
        x = np.arange(len(labels))
        ax.bar(x - 0.2, [reference.get(k, 0.0) for k in labels], 0.4, label="reference")
        ax.bar(x + 0.2, [live.get(k, 0.0) for k in labels], 0.4, label="window")
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        score = "n/a" if signal.score is None else f"{signal.score:.3f}"
        limit = "" if signal.threshold is None else f" / {signal.threshold:.3f}"
        ax.set_title(
            f"{signal.signal}: {score}{limit} ({signal.state})",
            fontsize=9,
            color="tab:red" if signal.state == "drift" else "black",
        )
        ax.set_ylabel("share")
    if signals:
        axes.flat[0].legend(fontsize=7)
    alert = "ALERT" if entry.alert else "no alert"
    fig.suptitle(f"{entry.model} {entry.version}: {entry.answers} answers, {alert}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
