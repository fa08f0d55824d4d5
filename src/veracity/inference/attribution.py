"""A second explanation, computed only on request: Grad-CAM over the model's last
convolution, from captum (the PyTorch project's attribution library).

The first explanation (``explanation.py``) is the model's own per-patch probabilities: free,
but only as fine as the patch grid (4x4 for the demo model). Grad-CAM asks the network
itself where, inside each patch, the evidence for "fake" sits: the gradients of the
fake-minus-real score, averaged per channel, weight the last convolution's feature map
(Selvaraju et al., 2017). It needs nothing from the architecture but a convolution, so it
serves any timm CNN the repository holds. It costs a forward and a backward pass in PyTorch
eager on top of the answer's own: 0.75 s against 0.31 s for the forward pass of a 720p
photo's 16 patches with the demo model on 2 CPU cores, and through the service 2.3 s
against 0.33 s for the plain answer (`make bench-explain`, bench/results/explain.json).

The grid has ``cells_per_patch(G)`` cells per side of each patch of a ``G`` x ``G`` patch
grid (about ``SIZE`` in all: 16x16 for 4x4 patches, 15x15 for 3x3), laid out as the patch
grid's: cell rows and columns from the top-left, each patch's feature map averaged down to
its share. Values
are relative, not probabilities: each is the cell's Grad-CAM (positive evidence only)
divided by the image's largest, so the most telling cell is 1 and a grid of zeros says the
model found no evidence for "fake" anywhere.

captum is imported here only, so a service that is never asked for Grad-CAM never loads it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from veracity.errors import ConfigurationError

SIZE = 16  # about this many cells per side (4 per patch for the demo's 4x4 patch grid)
METHOD = "grad_cam"


def cells_per_patch(patch_grid: int) -> int:
    return max(1, round(SIZE / patch_grid))


def last_convolution(model: nn.Module) -> nn.Conv2d:
    """The network's last 2-D convolution: its feature map is what Grad-CAM weighs."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise ConfigurationError(f"{type(model).__name__} has no convolution; Grad-CAM needs one")
    return convolutions[-1]


def grad_cam_grid(
    model: nn.Module,
    patches: torch.Tensor,
    *,
    patch_grid: int,
    score: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[tuple[float, ...], ...]:
    """Grad-CAM of ``score`` (one number per patch) over ``patches``, ``(G*G, 3, H, W)``
    laid out row-major on a ``G`` x ``G`` grid, as a grid in [0, 1]."""
    from captum.attr import LayerGradCam  # only here: see the module's docstring

    if patches.shape[0] != patch_grid * patch_grid:
        raise ValueError(f"expected {patch_grid * patch_grid} patches, got {patches.shape[0]}")
    cells = cells_per_patch(patch_grid)
    side = cells * patch_grid
    was_training = model.training
    model.eval()
    try:
        # The serving threads run in inference mode; Grad-CAM needs the autograd graph.
        with torch.inference_mode(False), torch.enable_grad():
            cam = LayerGradCam(lambda x: score(model(x)), last_convolution(model))
            maps = cam.attribute(patches.detach().clone(), relu_attributions=True)
    finally:
        model.train(was_training)
    pooled = nn.functional.adaptive_avg_pool2d(maps.detach().float(), (cells, cells))
    # (G*G, 1, c, c) -> (G, G, c, c) -> rows of patches, each row of cells across them.
    tiles = pooled.reshape(patch_grid, patch_grid, cells, cells)
    grid = tiles.permute(0, 2, 1, 3).reshape(side, side)
    peak = float(grid.max())
    if peak > 0:
        grid = grid / peak
    return tuple(tuple(round(float(v), 4) for v in row) for row in grid)
