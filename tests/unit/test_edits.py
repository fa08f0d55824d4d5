"""The training pipeline's edits: each writes exactly its mask, at the area asked, the same
way for the same seed, and real and fake images go through the same finish."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from veracity.edits import (
    EDIT_KINDS,
    FinishOptions,
    apply_finish,
    draw_finish,
    finish,
    make_fake,
)
from veracity.edits.inpaint import inpaint
from veracity.edits.regions import check_image, draw_region
from veracity.edits.rerender import recompress, smooth
from veracity.edits.selfblend import face_hull, self_blend
from veracity.edits.splice import EDGES, match_colours, splice

HEIGHT, WIDTH = 176, 208
# Eyes, nose tip, mouth corners, as CenterFace gives them (x, y).
FIVE = np.array([[80.0, 70.0], [128.0, 70.0], [104.0, 96.0], [86.0, 122.0], [122.0, 122.0]])


def textured(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Gradients, blobs and fine noise: every filter and paste visibly changes it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 200, y / height * 200, (x + y) / (width + height) * 255], -1)
    noise = cv2.GaussianBlur(rng.normal(0, 40, (height, width, 3)), (0, 0), 1.0)
    blobs = cv2.resize(rng.normal(0, 50, (6, 6, 3)), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + noise + blobs, 0, 255).astype(np.uint8)


IMAGE = textured(1)
DONOR = textured(2, 150, 260)


def fake(kind: str, seed: int, **kwargs: object):
    return make_fake(
        IMAGE, np.random.default_rng(seed), kind, donor=DONOR, landmarks=FIVE, **kwargs
    )


def assert_exact(original: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """Outside the mask bit-identical, every change inside it; returns the share changed."""
    assert edited.dtype == np.uint8
    assert edited.shape == original.shape
    assert mask.dtype == bool
    assert mask.shape == original.shape[:2]
    changed = (edited != original).any(axis=-1)
    assert not changed[~mask].any(), "a pixel outside the mask changed"
    assert (edited[~mask] == original[~mask]).all()
    return float(changed[mask].mean())


@pytest.mark.parametrize("kind", sorted(EDIT_KINDS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_kind_writes_exactly_its_mask(kind: str, seed: int) -> None:
    before = IMAGE.copy()
    edit = fake(kind, seed)
    assert edit.kind == kind
    assert (before == IMAGE).all(), "the edit must not write into its input"
    assert assert_exact(IMAGE, edit.image, edit.mask) >= 0.5
    if kind != "self_blend":  # the face, not the area range, sets its size
        assert 0.03 <= edit.mask.mean() <= 0.15
        assert edit.params["area_fraction"] == pytest.approx(edit.mask.mean(), abs=1e-4)


@pytest.mark.parametrize("kind", sorted(set(EDIT_KINDS) - {"self_blend"}))
def test_area_follows_the_requested_range(kind: str) -> None:
    for seed in range(4):
        edit = fake(kind, seed, area=(0.05, 0.06))
        assert 0.05 <= edit.mask.mean() <= 0.06
        assert_exact(IMAGE, edit.image, edit.mask)


@pytest.mark.parametrize("kind", sorted(EDIT_KINDS))
def test_same_seed_same_edit_other_seed_other_edit(kind: str) -> None:
    first, again, other = fake(kind, 7), fake(kind, 7), fake(kind, 8)
    assert (first.image == again.image).all()
    assert (first.mask == again.mask).all()
    assert first.params == again.params
    assert (first.image != other.image).any() or first.params != other.params


@pytest.mark.parametrize("edge", EDGES)
def test_splice_edges(edge: str) -> None:
    edit = splice(IMAGE, DONOR, np.random.default_rng(3), edge=edge)
    assert edit.params["edge"] == edge
    assert assert_exact(IMAGE, edit.image, edit.mask) >= 0.5


def test_colour_matching_takes_the_surroundings_mean_and_spread() -> None:
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 80, (40, 40, 3)).astype(np.uint8)
    reference = (rng.normal(170, 12, (40, 40, 3))).clip(0, 255).astype(np.uint8)
    inside = np.ones((40, 40), bool)
    matched = match_colours(patch, inside, reference, inside, "rgb").astype(float)
    np.testing.assert_allclose(matched.mean(axis=(0, 1)), reference.mean(axis=(0, 1)), atol=1.5)
    np.testing.assert_allclose(matched.std(axis=(0, 1)), reference.std(axis=(0, 1)), rtol=0.1)


@pytest.mark.parametrize("method", ["gaussian", "bilateral", "nl_means"])
def test_smoothing_removes_fine_detail_in_the_region(method: str) -> None:
    edit = smooth(IMAGE, np.random.default_rng(4), method=method)
    assert assert_exact(IMAGE, edit.image, edit.mask) >= 0.5

    def detail(image: np.ndarray) -> float:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return float(np.abs(cv2.Laplacian(grey, cv2.CV_64F))[edit.mask].mean())

    assert detail(edit.image) < 0.8 * detail(IMAGE)


def test_low_resolution_removes_fine_detail_in_the_region() -> None:
    edit = fake("low_resolution", 5)
    grey = [cv2.cvtColor(i, cv2.COLOR_RGB2GRAY) for i in (IMAGE, edit.image)]
    before, after = (float(np.abs(cv2.Laplacian(g, cv2.CV_64F))[edit.mask].mean()) for g in grey)
    assert after < 0.8 * before
    assert 2.0 <= edit.params["factor"] <= 4.0


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpaint_methods(method: str) -> None:
    edit = inpaint(IMAGE, np.random.default_rng(6), method=method)
    assert edit.params["method"] == method
    assert assert_exact(IMAGE, edit.image, edit.mask) >= 0.5


def test_recompress_is_the_jpeg_of_a_crop_off_the_grid() -> None:
    for seed in range(3):
        edit = recompress(IMAGE, np.random.default_rng(seed))
        p = edit.params
        assert 1 <= p["grid_shift_x"] <= 7
        assert 1 <= p["grid_shift_y"] <= 7
        top, left = int(p["crop_top"]), int(p["crop_left"])
        assert top % 8 == p["grid_shift_y"]
        assert left % 8 == p["grid_shift_x"]
        # Re-encoding the crop that starts there gives exactly the region's new pixels.
        rows, cols = np.nonzero(edit.mask)
        bottom, right = rows.max() + 1, cols.max() + 1
        crop = np.ascontiguousarray(IMAGE[top:bottom, left:right][..., ::-1])
        _, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(p["quality"])])
        expected = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
        region = edit.mask[top:bottom, left:right]
        assert (edit.image[top:bottom, left:right][region] == expected[region]).all()


def test_self_blend_with_dense_and_five_landmarks() -> None:
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    dense = np.stack([104 + 40 * np.cos(angles), 95 + 50 * np.sin(angles)], axis=1)
    for landmarks in (dense, FIVE):
        hull = face_hull(landmarks, HEIGHT, WIDTH)
        edit = self_blend(IMAGE, landmarks, np.random.default_rng(9))
        assert assert_exact(IMAGE, edit.image, edit.mask) >= 0.5
        grown = cv2.dilate(hull.astype(np.uint8), np.ones((61, 61), np.uint8)) > 0
        assert not (edit.mask & ~grown).any(), "the blend strays far from the face"
        assert (edit.mask & hull).sum() >= 0.5 * edit.mask.sum()
    # Five points outline eyes to mouth; the face they imply reaches beyond that hull.
    five_hull = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.fillConvexPoly(five_hull, cv2.convexHull(FIVE.astype(np.int32)), 1)
    assert face_hull(FIVE, HEIGHT, WIDTH).sum() > 1.5 * five_hull.sum()


def test_make_fake_draws_only_kinds_its_inputs_allow() -> None:
    alone = {make_fake(IMAGE, np.random.default_rng(s)).kind for s in range(30)}
    assert alone == set(EDIT_KINDS) - {"splice", "self_blend"}
    everything = {
        make_fake(IMAGE, np.random.default_rng(s), donor=DONOR, landmarks=FIVE).kind
        for s in range(60)
    }
    assert everything == set(EDIT_KINDS)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_fake(textured(0, 40, 300), np.random.default_rng(0)), "at least 64 px"),
        (lambda: make_fake(IMAGE[..., 0], np.random.default_rng(0)), "HxWx3"),
        (lambda: make_fake(IMAGE.astype(np.float32), np.random.default_rng(0)), "uint8"),
        (lambda: make_fake(IMAGE, np.random.default_rng(0), "warp"), "unknown edit kind"),
        (lambda: make_fake(IMAGE, np.random.default_rng(0), "splice"), "needs donor"),
        (lambda: make_fake(IMAGE, np.random.default_rng(0), "self_blend"), "needs landmarks"),
        (lambda: fake("splice", 0, area=(0.2, 0.1)), "area must"),
        (lambda: splice(IMAGE, textured(0, 30, 30), np.random.default_rng(0)), "donor is 30x30"),
        (lambda: self_blend(IMAGE, FIVE[:4], np.random.default_rng(0)), "N >= 5"),
        (lambda: self_blend(IMAGE, FIVE + 500, np.random.default_rng(0)), "inside the image"),
        (lambda: self_blend(IMAGE, FIVE / 20 + 2, np.random.default_rng(0)), "too small"),
        (lambda: smooth(IMAGE, np.random.default_rng(0), method="median"), "method must"),
    ],
)
def test_bad_inputs_are_refused_clearly(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_a_region_that_cannot_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="fits"):
        draw_region(np.random.default_rng(0), 64, 64, (0.45, 0.5), margin=20)


def test_finish_applies_the_same_steps_to_real_and_fake() -> None:
    edit = fake("copy_move", 1)
    for seed in range(6):
        real = finish(IMAGE, np.random.default_rng(seed))
        done = finish(edit.image, np.random.default_rng(seed), edit.mask)
        assert real.params == done.params
        assert real.image.shape == done.image.shape == (done.params.height, done.params.width, 3)
        assert real.mask is None
        assert done.mask is not None
        assert done.mask.dtype == bool
        assert done.mask.shape == done.image.shape[:2]
        assert abs(done.mask.mean() - edit.mask.mean()) < 0.01
        # An unedited image through the same draw comes out the same as the real one.
        again = apply_finish(IMAGE.copy(), done.params)
        assert (again.image == real.image).all()


def test_finish_draws_cover_formats_sizes_and_blur() -> None:
    draws = [draw_finish(np.random.default_rng(s), HEIGHT, WIDTH) for s in range(200)]
    assert {d.format for d in draws} == {"jpeg", "webp"}
    assert min(d.quality for d in draws) < 40
    assert max(d.quality for d in draws) > 95
    assert all(30 <= d.quality <= 100 for d in draws)
    assert any(d.width < WIDTH for d in draws)
    assert any(d.width == WIDTH for d in draws)
    assert any(d.blur_sigma > 0 for d in draws)
    assert any(d.blur_sigma == 0 for d in draws)
    assert all(min(d.width, d.height) >= 64 for d in draws)
    webp = FinishOptions(webp_probability=1.0, resize_probability=0.0, blur_probability=0.0)
    out = finish(IMAGE, np.random.default_rng(0), options=webp)
    assert out.params.format == "webp"
    assert out.image.shape == IMAGE.shape
    check_image(out.image)


def test_finish_refuses_a_mask_of_another_size() -> None:
    params = draw_finish(np.random.default_rng(0), HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="mask shape"):
        apply_finish(IMAGE, params, np.zeros((10, 10), bool))
