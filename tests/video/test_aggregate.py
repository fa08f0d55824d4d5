"""Video verdicts from frame verdicts: each aggregation rule at its thresholds, abstention,
and segments."""

import pytest

from veracity.verdicts.decision import Thresholds, decide
from veracity.verdicts.quality import InputQuality, Reason
from veracity.video.aggregate import (
    AggregationRule,
    FrameVerdict,
    aggregate_probabilities,
    find_segments,
    judge_video,
)

QUALITY = InputQuality(width=640, height=360, jpeg_quality=None, content_std=40.0)
THRESHOLDS = Thresholds()


def frames(probabilities: list[float], gated: set[int] = frozenset()) -> list[FrameVerdict]:
    out = []
    for i, p in enumerate(probabilities):
        reasons = [Reason("low_resolution", "small")] if i in gated else []
        verdict = decide(
            p, thresholds=THRESHOLDS, gate_reasons=reasons, ood_score=0.5, quality=QUALITY
        )
        out.append(FrameVerdict(timestamp_s=float(i), verdict=verdict))
    return out


def judge(probabilities, gated=frozenset(), **rule):
    return judge_video(
        frames(probabilities, gated),
        duration_s=float(len(probabilities)),
        thresholds=THRESHOLDS,
        rule=AggregationRule(**rule),
        min_duration_s=0.1,
    )


def test_confident_rule_averages_the_confident_fakes_at_the_fraction() -> None:
    # 4 of 10 frames (exactly the 0.4 fraction) at or above 0.8: their mean decides.
    values = [0.8, 0.9, 0.9, 1.0] + [0.3] * 6
    assert aggregate_probabilities(values, AggregationRule()) == pytest.approx(0.9)
    # 3 of 10 is below the fraction: no confident-fake average, and not 90% real: the mean.
    values = [0.8, 0.9, 1.0] + [0.3] * 7
    assert aggregate_probabilities(values, AggregationRule()) == pytest.approx(0.48)


def test_confident_rule_averages_the_confident_reals() -> None:
    values = [0.0] * 9 + [0.5]  # 90% at or below 0.2
    assert aggregate_probabilities(values, AggregationRule()) == pytest.approx(0.0)
    values = [0.0] * 8 + [0.5, 0.5]  # 80%: the mean
    assert aggregate_probabilities(values, AggregationRule()) == pytest.approx(0.1)


def test_mean_max_and_top_k() -> None:
    values = [0.1, 0.2, 0.9, 0.6]
    assert aggregate_probabilities(values, AggregationRule(method="mean")) == pytest.approx(0.45)
    assert aggregate_probabilities(values, AggregationRule(method="max")) == 0.9
    top2 = AggregationRule(method="top_k", top_k=2)
    assert aggregate_probabilities(values, top2) == pytest.approx(0.75)


def test_whole_video_verdicts() -> None:
    fake = judge([0.95] * 8)
    assert (fake.verdict, fake.reasons) == ("fake", ())
    real = judge([0.02] * 8)
    assert (real.verdict, real.segments) == ("real", ())
    middle = judge([0.5] * 8)
    assert middle.verdict == "inconclusive"
    assert [r.code for r in middle.reasons] == ["near_threshold"]


def test_too_many_gated_frames_abstain_at_the_fraction() -> None:
    # Half the frames gated is still judged; more than half is not.
    assert judge([0.02] * 8, gated={0, 1, 2, 3}).verdict == "real"
    verdict = judge([0.02] * 8, gated={0, 1, 2, 3, 4})
    assert verdict.verdict == "inconclusive"
    assert [r.code for r in verdict.reasons] == ["too_many_inconclusive_frames"]
    assert "low_resolution" in verdict.reasons[0].message
    assert verdict.frames_used == 3


def test_no_frames_and_too_short() -> None:
    assert [r.code for r in judge([]).reasons] == ["no_frames"]
    assert judge([]).fake_prob is None
    assert [r.code for r in judge([0.9]).reasons] == ["too_short"]


def test_a_manipulated_stretch_is_a_segment_and_never_real() -> None:
    values = [0.02] * 10 + [0.95, 0.97, 0.9] + [0.02] * 11
    verdict = judge(values)
    # 3 of 24 frames are fake: the confident rule says real (22 of 24 confidently real is
    # under 90%... it is 87.5%: the mean, 0.13, is real), but the segment forbids "real".
    assert verdict.verdict == "inconclusive"
    assert [r.code for r in verdict.reasons] == ["suspicious_segments"]
    (segment,) = verdict.segments
    assert (segment.start_s, segment.end_s, segment.frames) == (9.5, 12.5, 3)
    assert segment.fake_prob == pytest.approx(0.94)
    assert segment.peak_fake_prob == 0.97


def test_segments_are_ordered_most_suspicious_first_and_need_two_frames() -> None:
    values = [0.8, 0.8, 0.1, 0.99, 0.1, 0.95, 0.96, 0.97]
    segments = find_segments(frames(values), 8.0, THRESHOLDS, min_frames=2)
    assert [(s.start_s, s.end_s) for s in segments] == [(4.5, 8.0), (0.0, 1.5)]
    single = find_segments(frames(values), 8.0, THRESHOLDS, min_frames=1)
    assert len(single) == 3
