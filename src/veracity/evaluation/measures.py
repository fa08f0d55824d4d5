"""What an evaluation report measures and its plots draw again: the verdicts counted in the
confusion matrix, and the ROC curve."""

from __future__ import annotations

import numpy as np

VERDICTS = ("real", "fake", "inconclusive")


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    sorted_labels = labels[order]
    tps = np.concatenate([[0.0], np.cumsum(sorted_labels)])
    fps = np.concatenate([[0.0], np.cumsum(1 - sorted_labels)])
    return fps / max(1.0, fps[-1]), tps / max(1.0, tps[-1])


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    fpr, tpr = roc_curve(scores, labels)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
