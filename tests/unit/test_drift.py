"""Drift: the signals read from answers, the reference profile's round trip and tamper
detection, the PSI and its thresholds per signal, and reviewers' agreement."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.api.conftest import jpeg_bytes
from tests.conftest import DEMO_CHECKPOINT, write_tiny_checkpoint
from veracity.checkpoint import (
    CheckpointPaths,
    DriftProfileRecord,
    load_checkpoint,
    read_metadata,
    save_drift_profile,
)
from veracity.drift.compare import (
    AGREEMENT,
    Review,
    Window,
    assess,
    chance_level,
    gauge_value,
    psi,
)
from veracity.drift.options import DriftThresholds
from veracity.drift.profile import build_profile, encode_profile, load_profile
from veracity.drift.signals import SIGNALS, Observation
from veracity.errors import CheckpointError
from veracity.training.drift_profile import profile_uploads

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(hours=1), NOW)
THRESHOLDS = DriftThresholds(min_answers=100, min_reviews=20)


def observations(n: int, seed: int, **shift: object) -> list[Observation]:
    """``n`` answers like a JPEG photo stream; ``shift`` replaces fields with constants or,
    for callables, with a draw from them."""
    rng = np.random.default_rng(seed)
    made = []
    for _ in range(n):
        fake = float(rng.beta(2, 5))
        verdict = "real" if fake < 0.2 else "fake" if fake > 0.7 else "inconclusive"
        o = Observation(
            fake_prob=fake,
            verdict=verdict,
            reasons=("near_threshold",) if verdict == "inconclusive" else (),
            ood_score=float(rng.gamma(4, 0.1)),
            pixels=int(rng.choice([640 * 480, 1280 * 720, 1920 * 1080])),
            jpeg_quality=int(rng.integers(75, 96)),
            media_type="image/jpeg",
        )
        changes = {k: (v(rng) if callable(v) else v) for k, v in shift.items()}
        made.append(replace(o, **changes))
    return made


def profile_of(items: list[Observation]):
    return build_profile(
        items,
        model_name="m",
        model_version="1",
        calibration_version=1,
        built_at=NOW,
        data="test stream",
    )


REFERENCE = profile_of(observations(600, seed=0))


def states(items: list[Observation], reviews=()) -> dict[str, str]:
    drift = assess("m", "1", REFERENCE, WINDOW, items, list(reviews), THRESHOLDS)
    return {s.signal: s.state for s in drift.signals}


def test_an_answer_is_read_as_stored_and_odd_values_as_missing() -> None:
    image = Observation.from_answer(
        {
            "verdict": "fake",
            "model_verdict": "inconclusive",  # content credentials changed the verdict
            "fake_prob": 0.4,
            "reasons": [
                {"code": "low_resolution", "message": "..."},
                {"code": "declared_ai_generated", "message": "..."},
            ],
            "ood_score": 1.2,
            "quality": {"width": 640, "height": 480, "jpeg_quality": 81, "content_std": 40.0},
        },
        "image/jpeg",
    )
    assert image == Observation(
        0.4, "inconclusive", ("low_resolution",), 1.2, 307200, 81, "image/jpeg"
    )
    # Whatever a stored answer lacks, or holds in an odd shape, is missing, never an error.
    odd = [
        {"verdict": "real"},
        {"verdict": None, "reasons": 5, "quality": "x"},
        {"fake_prob": float("nan"), "ood_score": float("inf"), "reasons": [{"message": "x"}]},
        {"fake_prob": 10**400, "ood_score": "abc", "reasons": [None, 3, "near_threshold"]},
        {"quality": {"width": True, "height": 10**400, "jpeg_quality": float("nan")}},
        {"quality": {"width": 10, "height": 10, "jpeg_quality": 1000}},
        {"quality": {"width": -1, "height": 10, "jpeg_quality": -5}},
    ]
    for answer in odd:
        read = Observation.from_answer(answer, "image/png")
        for signal in SIGNALS:
            signal.values(read)  # binnable
    assert Observation.from_answer(odd[3], "x").reasons == ("near_threshold",)
    assert Observation.from_answer(odd[5], "x").jpeg_quality is None
    assert Observation.from_answer(odd[1], "x").verdict == "missing"
    stream = [Observation.from_answer(a, "image/png") for a in odd] * 20
    assess("m", "1", REFERENCE, WINDOW, stream, [], THRESHOLDS)


def test_the_profile_round_trips_beside_the_weights_and_a_changed_one_is_refused(
    tmp_path: Path,
) -> None:
    checkpoint = write_tiny_checkpoint(tmp_path / "m.safetensors")
    record = DriftProfileRecord(
        sha256="0" * 64, built_at=NOW, answers=600, calibration_version=1, data="test stream"
    )
    save_drift_profile(checkpoint, encode_profile(REFERENCE), record)
    paths = CheckpointPaths.resolve(checkpoint)
    metadata = read_metadata(checkpoint)
    assert metadata.drift_profile is not None
    assert load_profile(paths, metadata) == REFERENCE
    load_checkpoint(checkpoint)  # verified and accepted

    # Someone lowers the reference's share of fake verdicts to hide a shift.
    doctored = json.loads(paths.drift_profile.read_text())
    doctored["signals"]["verdict"]["counts"][0] += 50
    paths.drift_profile.write_text(json.dumps(doctored))
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load_profile(paths, metadata)
    with pytest.raises(CheckpointError, match="drift profile"):
        load_checkpoint(checkpoint)
    paths.drift_profile.unlink()
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(checkpoint)
    # `veracity calibrate --profile-only` repairs it (it must not refuse what it replaces).
    uploads = [jpeg_bytes(96, 96, seed=i) for i in range(4)]
    rebuilt = profile_uploads(checkpoint, uploads, data="repair", device=torch.device("cpu"))
    assert rebuilt.answers == 4
    load_checkpoint(checkpoint)


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    assert psi([10, 20, 70], [20, 40, 140]) == pytest.approx(0.0, abs=1e-3)
    small, large = psi([50, 50], [60, 40]), psi([50, 50], [90, 10])
    assert 0 < small < 0.1 < 0.5 < large
    # An empty bin (a category the reference never had) gives a finite score.
    assert math.isfinite(psi([100, 0], [0, 100]))


def test_the_chance_level_shrinks_as_windows_grow() -> None:
    small = chance_level(11, 600, 100, 0.001)
    assert small > 0.25 > chance_level(11, 600, 5000, 0.001)
    assert chance_level(1, 600, 100, 0.001) == 0.0


def test_an_unshifted_stream_raises_no_alert() -> None:
    for seed in (1, 2, 3):
        drift = assess("m", "1", REFERENCE, WINDOW, observations(300, seed=seed), [], THRESHOLDS)
        assert not drift.alert, [(s.signal, s.score, s.threshold) for s in drift.signals]
        assert {s.state for s in drift.signals} == {"ok", "empty"}  # no reviews: empty


@pytest.mark.parametrize(
    ("signal", "shift"),
    [
        ("fake_prob", {"fake_prob": lambda r: float(r.beta(5, 2))}),
        ("verdict", {"verdict": "fake"}),
        ("reasons", {"reasons": ("out_of_distribution", "low_jpeg_quality")}),
        ("ood_score", {"ood_score": lambda r: float(r.gamma(4, 0.1)) + 1.0}),
        ("pixels", {"pixels": 4000 * 3000}),
        ("jpeg_quality", {"jpeg_quality": lambda r: int(r.integers(10, 30))}),
        ("media_type", {"media_type": "image/webp"}),
    ],
)
def test_each_signal_alerts_on_its_own_shift_and_the_others_stay_quiet(
    signal: str, shift: dict
) -> None:
    found = states(observations(300, seed=5, **shift))
    assert found[signal] == "drift"
    quiet = {name for name, state in found.items() if state == "ok"}
    # The signals a shift does not touch stay ok (a verdict shift also moves reasons).
    untouched = {s.name for s in SIGNALS} - {signal, "reasons", "verdict", "fake_prob"}
    assert untouched <= quiet, found


def test_a_window_too_small_or_empty_is_reported_as_such_not_as_drift() -> None:
    shifted = observations(40, seed=9, media_type="image/webp")
    small = assess("m", "1", REFERENCE, WINDOW, shifted, [], THRESHOLDS)
    assert not small.alert
    assert {s.state for s in small.signals if s.signal != AGREEMENT} == {"insufficient"}
    assert all(s.score is None and math.isnan(gauge_value(s)) for s in small.signals)
    # The shares are still shown, so an operator sees the shift coming.
    media = next(s for s in small.signals if s.signal == "media_type")
    assert media.live is not None
    assert media.live["other"] == 1.0
    empty = assess("m", "1", REFERENCE, WINDOW, [], [], THRESHOLDS)
    assert empty.answers == 0
    assert not empty.alert
    assert {s.state for s in empty.signals} == {"empty"}


def test_reviewers_agreement_alerts_below_its_floor_with_enough_reviews() -> None:
    stream = observations(300, seed=1)
    agreeing = [Review("fake", "fake")] * 18 + [Review("real", "real")] * 7
    disagreeing = [Review("fake", "real")] * 15 + [Review("real", "real")] * 10
    assert states(stream, agreeing)[AGREEMENT] == "ok"
    assert states(stream, disagreeing)[AGREEMENT] == "drift"
    # Inconclusive answers are not counted; too few committed ones are not judged.
    few = [Review("fake", "real")] * 5 + [Review("inconclusive", "fake")] * 40
    assert states(stream, few)[AGREEMENT] == "insufficient"


def test_the_demo_model_ships_with_a_verified_profile_of_its_calibration_data() -> None:
    metadata = read_metadata(DEMO_CHECKPOINT)
    profile = load_profile(CheckpointPaths.resolve(DEMO_CHECKPOINT), metadata)
    assert profile is not None
    assert metadata.drift_profile is not None
    assert (profile.model_name, profile.model_version) == (
        metadata.model_name,
        metadata.model_version,
    )
    assert metadata.calibration is not None
    assert profile.calibration_version == metadata.calibration.version
    assert set(profile.signals) == {s.name for s in SIGNALS}
    assert sum(profile.signals["verdict"].counts) == profile.answers >= 100
