"""The per-cell loss: the classifier's head applied to each cell of the last feature map."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from veracity.errors import ConfigurationError
from veracity.models import create_classifier, dense_logits
from veracity.training.trainer import TrainingLoss


@pytest.mark.parametrize("architecture", ["tf_efficientnet_lite0", "resnet10t"])
def test_the_logits_are_the_mean_of_the_cells(architecture: str) -> None:
    torch.manual_seed(0)
    model = create_classifier(architecture).eval()
    with torch.no_grad():
        for parameter in model.get_classifier().parameters():
            parameter.normal_()
        images = torch.randn(2, 3, 96, 128)
        logits, cells = dense_logits(model, images)
        assert cells.shape == (2, 3, 4, 2)
        assert torch.allclose(logits, model(images), atol=1e-5)
        assert torch.allclose(cells.mean(dim=(1, 2)), logits, atol=1e-4)


def test_the_cells_are_trained_towards_the_share_of_the_edit_they_hold() -> None:
    torch.manual_seed(0)
    model = create_classifier("resnet10t").eval()
    images = torch.randn(2, 3, 64, 64)
    targets = torch.tensor([0, 1])
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[1, :32, :32] = True  # the top-left quarter: exactly the top-left cell of a 2x2 map
    plain = TrainingLoss(0.0)(model, images, targets, masks)
    assert torch.allclose(plain, nn.functional.cross_entropy(model(images), targets))
    weighted = TrainingLoss(0.5)(model, images, targets, masks)
    _, cells = dense_logits(model, images)
    share = torch.zeros(2, 2, 2)
    share[1, 0, 0] = 1.0
    soft = torch.stack([1 - share.flatten(), share.flatten()], dim=1)
    dense = nn.functional.cross_entropy(cells.reshape(-1, 2), soft)
    assert torch.allclose(weighted, plain + 0.5 * dense, atol=1e-6)


def test_a_head_that_is_not_average_and_linear_is_refused() -> None:
    model = create_classifier("resnet10t")
    model.fc = nn.Sequential(nn.Linear(512, 2))
    with pytest.raises(ConfigurationError, match="--dense-weight 0"):
        dense_logits(model, torch.randn(1, 3, 64, 64))
