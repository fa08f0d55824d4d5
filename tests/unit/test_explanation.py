"""The explanation grid: which patch each cell holds, and which way up the grid is."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY_ARCH, TINY_SIZE
from veracity.checkpoint import load_checkpoint, save_checkpoint
from veracity.inference.explanation import explain
from veracity.inference.predictor import Predictor
from veracity.models import CLASS_NAMES, create_classifier, resolve_preprocess_config
from veracity.overlay import cell_box, draw_overlay, overlay_png, ramp
from veracity.preprocess import PatchTransform, PreprocessConfig, patch_origins

GRID = 4


def write_patch_checkpoint(path: Path, *, grid: int = GRID, seed: int = 0) -> Path:
    """The tiny test model, scoring grid x grid native-resolution patches as the demo does."""
    torch.manual_seed(seed)
    model = create_classifier(TINY_ARCH)
    config = replace(
        resolve_preprocess_config(model, image_size=TINY_SIZE),
        mode="patches",
        patch_grid=grid,
        patch_pooling="top_half",
    )
    save_checkpoint(
        path,
        model,
        architecture=TINY_ARCH,
        class_names=CLASS_NAMES,
        preprocess=config,
        model_name="tiny-patches",
        model_version="0.0.1",
        metrics={"val_accuracy": 0.5},
    )
    return path


def patch_config(grid: int = GRID) -> PreprocessConfig:
    return PreprocessConfig(
        input_size=(3, TINY_SIZE, TINY_SIZE),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        mode="patches",
        patch_grid=grid,
    )


def labelled_cells(width: int, height: int, grid: int = GRID) -> Image.Image:
    """Each cell of the even grid painted with its own index k = row * grid + col (red)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    for row in range(grid):
        for col in range(grid):
            left, top, right, bottom = cell_box(row, col, grid, grid, width, height)
            pixels[top:bottom, left:right, 0] = 10 * (row * grid + col) + 5
    return Image.fromarray(pixels)


@pytest.mark.parametrize("size", [(512, 320), (1280, 720), (300, 900), (256, 256)])
def test_patch_k_is_taken_from_row_k_div_cols_col_k_mod_cols(size):
    width, height = size
    crops = PatchTransform(patch_config()).crops(labelled_cells(width, height))
    assert len(crops) == GRID * GRID
    for k, crop in enumerate(crops):
        reds = np.asarray(crop)[..., 0]
        # The patch's centre pixel is inside its own cell whatever the 16-pixel snap does;
        # on these sizes the whole patch is (checked below for every size).
        centre = int(reds[TINY_SIZE // 2, TINY_SIZE // 2])
        assert centre == 10 * k + 5, (size, k)


def test_each_patch_centre_lies_in_its_own_cell():
    # Every side from GRID patches wide up: the 16-pixel snap never moves a patch's centre
    # out of its cell, so a cell always holds the patch taken there.
    for length in range(GRID * TINY_SIZE, 4000):
        starts = patch_origins(length, TINY_SIZE, GRID)
        for index, start in enumerate(starts):
            centre = start + TINY_SIZE // 2
            assert index * length // GRID <= centre < (index + 1) * length // GRID, length


class RedPatches:
    """A backend whose fake-minus-real score is each patch's mean red level (0 to 1): the
    probabilities then say which pixels each patch came from."""

    name = "red"
    device = torch.device("cpu")

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        red = batch[:, 0].mean(dim=(1, 2))  # normalised: -1 (0) .. 1 (255) at mean=std=0.5
        logits = torch.stack([torch.zeros_like(red), 8 * (red + 1) - 4], dim=1)
        return logits, torch.zeros(batch.shape[0], 8)


@pytest.fixture(scope="module")
def patch_predictor(tmp_path_factory) -> Predictor:
    path = write_patch_checkpoint(tmp_path_factory.mktemp("patches") / "model.safetensors")
    checkpoint = load_checkpoint(path)
    predictor = Predictor(checkpoint, torch.device("cpu"), backend=RedPatches())
    predictor.config = replace(predictor.config, mean=(0.5,) * 3, std=(0.5,) * 3)
    predictor.transform = type(predictor.transform)(predictor.config)
    return predictor


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_grid_maps_back_row_major_from_the_top_left(patch_predictor):
    # A wide image, one bright cell on the top row's right end: a transposed or flipped
    # grid would put the maximum elsewhere.
    width, height = 640, 384
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    left, top, right, bottom = cell_box(0, 3, GRID, GRID, width, height)
    pixels[top:bottom, left:right, 0] = 255
    prediction, verdict = patch_predictor.assess(
        png_bytes(Image.fromarray(pixels)), robustness_check=False
    )
    found = explain(patch_predictor.config, prediction, verdict.faces)
    assert found.method == "patch_probabilities"
    assert found.grid is not None
    assert len(found.grid) == GRID
    assert all(len(row) == GRID for row in found.grid)
    hot = [(r, c) for r in range(GRID) for c in range(GRID) if found.grid[r][c] > 0.99]
    assert hot == [(0, 3)]
    cold = {found.grid[r][c] for r in range(GRID) for c in range(GRID) if (r, c) != (0, 3)}
    assert cold == {round(1 / (1 + np.exp(4.0)), 4)}  # sigmoid(-4): black patches


def test_grid_of_labelled_cells_matches_their_labels(patch_predictor):
    image = labelled_cells(768, 512)
    prediction, verdict = patch_predictor.assess(png_bytes(image), robustness_check=False)
    found = explain(patch_predictor.config, prediction, verdict.faces)
    assert found.grid is not None
    flat = [p for row in found.grid for p in row]
    # Labels rise with k, so the probabilities must rise row by row, left to right.
    assert flat == sorted(flat)
    assert len(set(flat)) == GRID * GRID


def test_resize_checkpoints_have_no_grid_and_say_why(tiny_checkpoint):
    predictor = Predictor(load_checkpoint(tiny_checkpoint), torch.device("cpu"))
    prediction, verdict = predictor.assess(
        png_bytes(labelled_cells(256, 256)), robustness_check=False
    )
    found = explain(predictor.config, prediction, verdict.faces)
    assert found.method == "unavailable"
    assert found.grid is None
    assert found.reason
    assert "resized crop" in found.reason
    assert prediction.patch_fake_probs == ()


def test_overlay_is_the_image_size_with_each_cell_coloured_by_its_probability():
    grid = [[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]]
    width, height = 301, 200
    image = Image.open(io.BytesIO(overlay_png(grid, width, height)))
    assert image.format == "PNG"
    assert image.size == (width, height)
    assert image.mode == "P"
    assert image.has_transparency_data
    image = image.convert("RGBA")
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            left, top, right, bottom = cell_box(r, c, 2, 3, width, height)
            for x, y in ((left, top), (right - 1, bottom - 1)):
                assert image.getpixel((x, y)) == ramp(value), (r, c, x, y)
    red, _, blue, alpha = ramp(1.0)
    assert red > 150
    assert blue < 50
    assert alpha > ramp(0.5)[3]
    assert ramp(0.0)[2] > 100
    assert ramp(0.0)[0] < 100


def test_overlay_refuses_a_ragged_grid():
    with pytest.raises(ValueError, match="rectangle"):
        draw_overlay([[0.1, 0.2], [0.3]], 10, 10)


def test_cli_predict_explain_prints_the_grid(tmp_path, capsys):
    from veracity.cli.command import main

    checkpoint = write_patch_checkpoint(tmp_path / "model.safetensors")
    image = tmp_path / "cells.png"
    labelled_cells(320, 256).save(image)
    assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--explain"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    explanation = record["explanation"]
    assert explanation["method"] == "patch_probabilities"
    assert len(explanation["grid"]) == GRID
    assert all(len(row) == GRID and all(0 <= p <= 1 for p in row) for row in explanation["grid"])
    assert main(["predict", str(image), "--checkpoint", str(checkpoint)]) == 0
    assert "explanation" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_grid_with_more_colours_than_a_palette_is_drawn_to_the_nearest_step() -> None:
    # Grad-CAM's 16x16 grid: 256 different values, more than an indexed PNG's 255 colours.
    grid = [[(16 * r + c) / 255 for c in range(16)] for r in range(16)]
    pixels = draw_overlay(grid, 64, 64).convert("RGBA")
    for r, c in ((0, 0), (7, 9), (15, 15)):
        drawn = pixels.getpixel((4 * c + 1, 4 * r + 1))
        assert drawn == ramp(round(grid[r][c] * 250) / 250)
        assert all(abs(a - b) <= 3 for a, b in zip(drawn, ramp(grid[r][c]), strict=True))
