"""Validation metrics for the binary real/fake task."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics.functional.classification import binary_auroc


@dataclass(frozen=True)
class ValidationMetrics:
    accuracy: float
    roc_auc: float
    loss: float

    def as_dict(self) -> dict[str, float]:
        return {"val_accuracy": self.accuracy, "val_roc_auc": self.roc_auc, "val_loss": self.loss}


def compute_metrics(logits: torch.Tensor, labels: torch.Tensor) -> ValidationMetrics:
    """Accuracy at argmax, ROC-AUC of P(fake), mean cross-entropy.

    ROC-AUC is NaN when the labels hold a single class (it is undefined there).
    """
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    fake_prob = torch.softmax(logits.float(), dim=1)[:, 1]
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    if torch.unique(labels).numel() < 2:
        roc_auc = float("nan")
    else:
        roc_auc = float(binary_auroc(fake_prob, labels).item())
    return ValidationMetrics(accuracy=accuracy, roc_auc=roc_auc, loss=loss)
