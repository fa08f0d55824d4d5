"""Verdict logic: operating points, gates, stability, JPEG quality, calibration, the OOD gate."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from veracity.errors import ConfigurationError
from veracity.verdicts.calibration import (
    IDENTITY,
    expected_calibration_error,
    fit_calibration,
)
from veracity.verdicts.decision import Stability, Thresholds, decide
from veracity.verdicts.ood import choose_threshold, fit_reference
from veracity.verdicts.quality import (
    InputQuality,
    QualityLimits,
    content_std,
    estimate_jpeg_quality,
    quality_reasons,
)

GOOD = InputQuality(width=512, height=512, jpeg_quality=90, content_std=40.0)
T = Thresholds(real_threshold=0.25, fake_threshold=0.75)


def codes(verdict) -> list[str]:
    return [r.code for r in verdict.reasons]


@pytest.mark.parametrize(
    ("fake_prob", "expected"),
    [
        (0.0, "real"),
        (0.25, "real"),  # at the real operating point: real
        (np.nextafter(0.25, 1.0), "inconclusive"),  # just past it: the band
        (0.5, "inconclusive"),
        (np.nextafter(0.75, 0.0), "inconclusive"),
        (0.75, "fake"),  # at the fake operating point: fake
        (1.0, "fake"),
    ],
)
def test_each_threshold_boundary(fake_prob: float, expected: str) -> None:
    verdict = decide(fake_prob, thresholds=T, gate_reasons=[], ood_score=0.5, quality=GOOD)
    assert verdict.verdict == expected
    assert codes(verdict) == (["near_threshold"] if expected == "inconclusive" else [])
    assert verdict.fake_prob + verdict.real_prob == pytest.approx(1.0)


def test_label_stays_the_more_probable_class_when_inconclusive() -> None:
    verdict = decide(0.6, thresholds=T, gate_reasons=[], ood_score=None, quality=GOOD)
    assert (verdict.verdict, verdict.label) == ("inconclusive", "fake")


@pytest.mark.parametrize(("real", "fake"), [(0.6, 0.7), (0.3, 0.4), (-0.1, 0.7), (0.2, 1.1)])
def test_thresholds_must_bracket_one_half(real: float, fake: float) -> None:
    with pytest.raises(ConfigurationError, match="thresholds must satisfy"):
        Thresholds(real, fake)


def test_out_of_distribution_overrides_a_confident_probability() -> None:
    far = decide(0.999, thresholds=T, gate_reasons=[], ood_score=3.2, quality=GOOD)
    assert far.verdict == "inconclusive"
    assert codes(far) == ["out_of_distribution"]
    assert "3.20x" in far.reasons[0].message
    edge = decide(0.999, thresholds=T, gate_reasons=[], ood_score=1.0, quality=GOOD)
    assert edge.verdict == "fake"  # a score of exactly 1 is the threshold itself: inside


def test_a_flip_under_the_self_check_is_unstable() -> None:
    flipped = Stability(score=0.1, variants={"jpeg75": 0.05, "half_size": 0.9}, flipped=("jpeg75",))
    verdict = decide(
        0.95, thresholds=T, gate_reasons=[], ood_score=0.4, quality=GOOD, stability=flipped
    )
    assert verdict.verdict == "inconclusive"
    assert codes(verdict) == ["unstable"]
    assert "re-encoded as JPEG at quality 75" in verdict.reasons[0].message
    steady = Stability(score=0.97, variants={"jpeg75": 0.93}, flipped=())
    verdict = decide(
        0.95, thresholds=T, gate_reasons=[], ood_score=0.4, quality=GOOD, stability=steady
    )
    assert verdict.verdict == "fake"


def jpeg(quality: int, size: int = 64, **params) -> Image.Image:
    rng = np.random.default_rng(quality)
    buffer = io.BytesIO()
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, **params)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 90, 95])
def test_jpeg_quality_is_estimated_from_the_quantisation_table(quality: int) -> None:
    assert abs(estimate_jpeg_quality(jpeg(quality)) - quality) <= 1
    # Subsampling and optimisation change the file, not the quality.
    assert abs(estimate_jpeg_quality(jpeg(quality, subsampling=0, optimize=True)) - quality) <= 1


def test_no_jpeg_quality_for_lossless_formats() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    buffer.seek(0)
    assert estimate_jpeg_quality(Image.open(buffer)) is None


LIMITS = QualityLimits(min_jpeg_quality=50, min_content_std=3.0)


@pytest.mark.parametrize(
    ("quality", "expected"),
    [
        (InputQuality(128, 128, 90, 30.0), []),
        (InputQuality(127, 400, 90, 30.0), ["low_resolution"]),  # the shorter side counts
        (InputQuality(400, 400, 49, 30.0), ["heavy_compression"]),
        (InputQuality(400, 400, 50, 30.0), []),  # at the limit: accepted
        (InputQuality(400, 400, None, 2.99), ["no_content"]),
        (InputQuality(400, 400, None, 3.0), []),
        (InputQuality(64, 64, 20, 0.0), ["low_resolution", "heavy_compression", "no_content"]),
    ],
)
def test_each_quality_gate(quality: InputQuality, expected: list[str]) -> None:
    reasons = quality_reasons(quality, LIMITS, min_side=128)
    assert [r.code for r in reasons] == expected
    verdict = decide(0.01, thresholds=T, gate_reasons=reasons, ood_score=0.3, quality=quality)
    assert verdict.verdict == ("real" if not expected else "inconclusive")


def test_content_of_flat_and_textured_images() -> None:
    assert content_std(Image.new("RGB", (300, 200), (120, 30, 200))) == 0.0
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    assert content_std(noisy) > 30


def test_ece_of_perfect_and_overconfident_predictions() -> None:
    labels = np.array([0, 1] * 50, dtype=float)
    assert expected_calibration_error(labels, labels) == 0.0
    # Always 99 % sure, right half the time: ECE = 0.99 - 0.5.
    probs = np.where(np.arange(100) % 4 < 2, 0.99, 0.01)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.49)


def overconfident_scores(n: int, seed: int, bias: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(s / 4 + bias): a model whose scores are 4x too confident."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0, 6, n)
    truth = 1 / (1 + np.exp(-(scores / 4 + bias)))
    return scores, (rng.random(n) < truth).astype(float)


def test_calibration_lowers_the_error_of_an_overconfident_model() -> None:
    scores, labels = overconfident_scores(2000, seed=1)
    fit = fit_calibration(scores, labels)
    assert fit.calibrator.method == "temperature"  # no bias: Platt's intercept earns nothing
    assert fit.calibrator.slope == pytest.approx(0.25, rel=0.15)
    assert fit.ece_before > 0.08
    assert fit.ece_after < fit.ece_before / 2
    fresh, fresh_labels = overconfident_scores(2000, seed=2)
    before = expected_calibration_error(IDENTITY.fake_probs(fresh), fresh_labels)
    after = expected_calibration_error(fit.calibrator.fake_probs(fresh), fresh_labels)
    assert after < 0.04 < before


def test_platt_is_chosen_when_the_model_is_biased() -> None:
    scores, labels = overconfident_scores(2000, seed=3, bias=1.5)
    fit = fit_calibration(scores, labels)
    assert fit.calibrator.method == "platt"
    assert fit.calibrator.intercept == pytest.approx(1.5, abs=0.3)
    assert fit.candidates["platt"] < fit.candidates["temperature"]


def test_calibration_refuses_too_little_data() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        fit_calibration(np.zeros(10), np.array([0, 1] * 5, dtype=float))
    with pytest.raises(ValueError, match="both classes"):
        fit_calibration(np.zeros(40), np.zeros(40))


def clusters(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.stack([torch.full((dim,), -2.0), torch.full((dim,), 2.0)])
    labels = torch.randint(0, 2, (n,), generator=generator)
    return centres[labels] + torch.randn(n, dim, generator=generator), labels


def test_reference_scores_separate_near_from_far_at_any_layer() -> None:
    layers = [8, 24]
    train, labels = clusters(800, sum(layers), seed=0)
    val, _ = clusters(200, sum(layers), seed=1)
    reference = fit_reference(train, labels, classes=2, layers=layers, validation=val)
    assert reference.layers == layers
    # Each layer is scaled by its median validation distance.
    assert reference.patch_scores(val).median() == pytest.approx(1.0, rel=0.2)
    near, _ = clusters(200, sum(layers), seed=2)
    threshold = choose_threshold(reference.patch_scores(val).numpy())
    assert (reference.patch_scores(near).numpy() <= threshold).mean() >= 0.98
    # Unlike the training data in the first layer only, or in the last only: both flagged.
    shallow, deep = near.clone(), near.clone()
    # Alternating signs: away from both class means, not from one towards the other.
    shallow[:, :8] += torch.tensor([6.0, -6.0] * 4)
    deep[:, 8:] += torch.tensor([6.0, -6.0] * 12)
    assert (reference.patch_scores(shallow).numpy() > threshold).all()
    assert (reference.patch_scores(deep).numpy() > threshold).all()
    # Images are scored on the mean of their patches.
    assert reference.image_scores(near, patches=4).shape == (50,)
    # The statistics survive a round trip through their tensors.
    again = type(reference).from_tensors(reference.tensors())
    torch.testing.assert_close(again.patch_scores(near), reference.patch_scores(near))


def test_pixel_statistics_floor_flat_and_grey_patches() -> None:
    from veracity.models import pixel_statistics

    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 3, 64, 64, generator=generator) * 0.1
    flat = torch.full((1, 3, 64, 64), 0.3)
    grey = torch.randn(1, 1, 64, 64, generator=generator).expand(1, 3, 64, 64)
    stats = pixel_statistics(torch.cat([noisy, flat, grey]))
    assert stats.shape == (4, 8)
    floor = float(np.log(1e-3))
    assert torch.allclose(stats[2], torch.full((8,), floor))  # flat: nothing anywhere
    assert torch.allclose(stats[3, 3:5], torch.full((2,), floor))  # grey: no colour noise
    assert (stats[:2] > floor + 2).all()  # camera-like noise is far above the floor


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 5, 7), (1, 3, 1, 6), (1, 3, 2, 1)])
def test_pixel_statistics_match_their_plain_definition(shape: tuple[int, ...]) -> None:
    """The fast residual and spreads equal avg_pool2d's 3x3 mean and torch.std."""
    from veracity.models import pixel_statistics

    images = torch.randn(*shape, generator=torch.Generator().manual_seed(1)).double()
    local = torch.nn.functional.avg_pool2d(images, 3, 1, 1, count_include_pad=False)
    residual = images - local
    chroma = residual[:, 0::2] - residual[:, 1:2]
    spreads = [t.flatten(2).std(dim=2) for t in (residual, chroma, images)]
    expected = torch.log(torch.cat(spreads, dim=1) + 1e-3)
    torch.testing.assert_close(pixel_statistics(images), expected)


def test_layer_distances_match_the_mahalanobis_definition() -> None:
    from veracity.verdicts.ood import LayerStats

    generator = torch.Generator().manual_seed(2)
    a = torch.randn(6, 6, generator=generator)
    precision = a @ a.T + torch.eye(6)
    means = torch.randn(2, 6, generator=generator) + 3.0
    features = torch.randn(10, 6, generator=generator) + 3.0
    stats = LayerStats(means, precision, scale=1.0)
    diffs = features[:, None, :] - means[None, :, :]
    squared = torch.einsum("ncd,de,nce->nc", diffs, precision, diffs)
    expected = torch.sqrt(squared.min(dim=1).values / 6)
    torch.testing.assert_close(stats.distances(features), expected, rtol=1e-4, atol=1e-5)
