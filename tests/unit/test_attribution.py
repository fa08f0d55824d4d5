"""Grad-CAM's grid (the second explanation): laid out like the patch grid, from the top-left,
and in [0, 1] with the most telling cell at 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from veracity.errors import ConfigurationError
from veracity.inference.attribution import SIZE, grad_cam_grid, last_convolution


def brightness_model() -> nn.Module:
    """Its 'fake' score is the mean brightness its one convolution sees, so Grad-CAM over
    that convolution is the brightness map itself."""
    conv = nn.Conv2d(3, 1, 1, bias=False)
    head = nn.Linear(1, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        head.weight.copy_(torch.tensor([[0.0], [1.0]]))
        head.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


def score(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, 1] - logits[:, 0]


def test_the_grid_is_the_patch_grid_read_row_by_row_from_the_top_left() -> None:
    patches = torch.zeros(4, 3, 32, 32)  # a 2x2 patch grid: 0 1 / 2 3
    patches[1, :, :8, :8] = 1.0  # the top-right patch, its top-left quarter
    patches[2, :, 24:, 24:] = 0.5  # the bottom-left patch, its bottom-right quarter, dimmer
    grid = grad_cam_grid(brightness_model(), patches, patch_grid=2, score=score)
    assert len(grid) == SIZE
    assert all(len(row) == SIZE for row in grid)
    cells = SIZE // 2  # 8 per patch: a quarter of a patch is 2 cells of the 16
    bright = {(r, c) for r in range(SIZE) for c in range(SIZE) if grid[r][c] == 1.0}
    assert bright == {(r, c) for r in range(2) for c in range(cells, cells + 2)}
    dim = {(r, c) for r in range(SIZE) for c in range(SIZE) if 0 < grid[r][c] < 1}
    assert dim == {(r, c) for r in range(SIZE - 2, SIZE) for c in range(cells - 2, cells)}
    assert all(grid[r][c] == pytest.approx(0.5) for r, c in dim)


def test_no_evidence_anywhere_is_a_grid_of_zeros() -> None:
    grid = grad_cam_grid(brightness_model(), torch.zeros(1, 3, 32, 32), patch_grid=1, score=score)
    assert {v for row in grid for v in row} == {0.0}


def test_a_model_without_a_convolution_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no convolution"):
        last_convolution(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))


def test_a_three_by_three_patch_grid_gives_five_cells_a_patch() -> None:
    patches = torch.zeros(9, 3, 30, 30)
    patches[4] = 1.0  # the middle patch
    grid = grad_cam_grid(brightness_model(), patches, patch_grid=3, score=score)
    assert len(grid) == 15
    assert {(r, c) for r in range(15) for c in range(15) if grid[r][c] > 0} == {
        (r, c) for r in range(5, 10) for c in range(5, 10)
    }
