"""Video verdicts from frame verdicts: each aggregation rule at its thresholds, abstention,
segments, and the sustained-run rule on synthetic per-frame probability sequences."""

import pytest

from veracity.errors import ConfigurationError
from veracity.settings import Settings
from veracity.verdicts.decision import Thresholds, decide
from veracity.verdicts.quality import InputQuality, Reason
from veracity.video.aggregate import AggregationRule, aggregate_probabilities, judge_video
from veracity.video.segments import FrameVerdict, SustainedRun, find_segments

QUALITY = InputQuality(width=640, height=360, jpeg_quality=None, content_std=40.0)
THRESHOLDS = Thresholds()


def frames(
    probabilities: list[float], gated: set[int] = frozenset(), spacing: float = 1.0
) -> list[FrameVerdict]:
    out = []
    for i, p in enumerate(probabilities):
        reasons = [Reason("low_resolution", "small")] if i in gated else []
        verdict = decide(
            p, thresholds=THRESHOLDS, gate_reasons=reasons, ood_score=0.5, quality=QUALITY
        )
        out.append(FrameVerdict(timestamp_s=i * spacing, verdict=verdict))
    return out


def judge(probabilities, gated=frozenset(), spacing=1.0, **rule):
    return judge_video(
        frames(probabilities, gated, spacing),
        duration_s=len(probabilities) * spacing,
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


def test_a_short_manipulated_stretch_is_a_segment_and_never_real() -> None:
    values = [0.02] * 10 + [0.95, 0.97] + [0.02] * 12
    verdict = judge(values)
    # 2 of 24 frames are fake: too few for a sustained run, and the confident rule says
    # real (22 of 24 confidently real is 91.7%), but the segment forbids "real".
    assert verdict.verdict == "inconclusive"
    assert verdict.fake_prob == pytest.approx(0.02)
    assert [r.code for r in verdict.reasons] == ["suspicious_segments"]
    assert "2 of the 2 frames between 9.50 s and 11.50 s" in verdict.reasons[0].message
    (segment,) = verdict.segments
    assert (segment.start_s, segment.end_s, segment.frames) == (9.5, 11.5, 2)
    assert segment.fake_prob == pytest.approx(0.96)
    assert segment.peak_fake_prob == 0.97
    assert not segment.sustained


def test_a_sustained_run_is_fake_and_is_the_top_segment() -> None:
    # 12 s sampled every 0.5 s; frames from 4 s to 7 s manipulated, and an odd pair
    # elsewhere: a third of the frames, which the confident rule alone calls inconclusive.
    values = [0.05 if not 4.0 <= i * 0.5 < 7.0 else 0.9 for i in range(24)]
    values[2] = 0.97
    values[3] = 0.96
    verdict = judge(values, spacing=0.5)
    assert verdict.verdict == "fake"
    assert verdict.reasons == ()
    top, lesser = verdict.segments
    assert (top.start_s, top.end_s, top.frames, top.fake_frames) == (3.75, 6.75, 6, 6)
    assert top.sustained
    assert not lesser.sustained
    # The video is as fake as the run, though the lesser segment's mean is higher.
    assert lesser.fake_prob > top.fake_prob
    assert verdict.fake_prob == top.fake_prob == pytest.approx(0.9)
    assert THRESHOLDS.classify(aggregate_probabilities(values, AggregationRule())) != "fake"


def test_the_run_rule_holds_for_every_method() -> None:
    values = [0.05] * 8 + [0.9] * 4 + [0.05] * 8
    for method in ("confident", "mean", "top_k"):
        verdict = judge(values, method=method)
        assert (verdict.verdict, verdict.fake_prob) == ("fake", pytest.approx(0.9)), method


def test_a_single_odd_frame_or_isolated_ones_are_never_fake() -> None:
    single = judge([0.02] * 15 + [0.99] + [0.02] * 16)
    assert (single.verdict, single.segments) == ("real", ())
    # Isolated fake frames, each two or more frames from the next: no segment at all.
    values = [0.02] * 32
    for i in (3, 10, 17, 24):
        values[i] = 0.99
    isolated = judge(values)
    assert (isolated.verdict, isolated.segments) == ("real", ())


def test_one_missed_frame_does_not_split_a_run_but_two_do() -> None:
    run = [0.05] * 8 + [0.95, 0.95, 0.95, 0.3, 0.95, 0.95] + [0.05] * 8
    verdict = judge(run)
    assert verdict.verdict == "fake"
    (segment,) = verdict.segments
    assert (segment.start_s, segment.end_s) == (7.5, 13.5)
    assert (segment.frames, segment.fake_frames) == (6, 5)
    assert segment.fake_prob == pytest.approx((0.95 * 5 + 0.3) / 6, abs=1e-4)
    # Two missed frames in a row end the evidence: two segments, neither sustained.
    split = [0.05] * 8 + [0.95, 0.95, 0.3, 0.3, 0.95, 0.95] + [0.05] * 8
    verdict = judge(split)
    assert verdict.verdict == "inconclusive"
    assert [(s.start_s, s.end_s) for s in verdict.segments] == [(7.5, 9.5), (11.5, 13.5)]
    assert not any(s.sustained for s in verdict.segments)


def test_a_run_of_many_frames_in_under_a_second_is_not_fake() -> None:
    # Sampled at 30 frames a second: 20 fake frames cover 0.67 s, a cut or a cross-fade.
    values = [0.02] * 40 + [0.95] * 20 + [0.02] * 40
    verdict = judge(values, spacing=1 / 30)
    assert verdict.verdict == "inconclusive"
    assert [r.code for r in verdict.reasons] == ["suspicious_segments"]
    (segment,) = verdict.segments
    assert segment.end_s - segment.start_s == pytest.approx(20 / 30, abs=1e-3)
    assert not segment.sustained
    # 30 such frames cover a second: sustained.
    values = [0.02] * 40 + [0.95] * 30 + [0.02] * 40
    assert judge(values, spacing=1 / 30).verdict == "fake"


def test_a_run_needs_its_mean_past_the_operating_point() -> None:
    # Three fake frames barely past 0.75 around a missed real one: mean 0.6, not confident.
    values = [0.05] * 8 + [0.8, 0.05, 0.8, 0.8] + [0.05] * 8
    verdict = judge(values)
    assert verdict.verdict == "inconclusive"
    (segment,) = verdict.segments
    assert (segment.fake_frames, segment.sustained) == (3, False)


def test_all_real_frames_are_real() -> None:
    verdict = judge([0.02, 0.1, 0.05, 0.2, 0.01] * 6)
    assert (verdict.verdict, verdict.reasons, verdict.segments) == ("real", (), ())


def test_gated_frames_are_gaps_and_too_many_still_abstain() -> None:
    # A gated frame inside a run carries no probability: a gap, left out of the mean.
    values = [0.05] * 8 + [0.95, 0.95, 0.95, 0.95] + [0.05] * 8
    verdict = judge(values, gated={10})
    assert verdict.verdict == "fake"
    (segment,) = verdict.segments
    assert (segment.frames, segment.fake_frames, segment.fake_prob) == (4, 3, 0.95)
    # More than half the frames gated: the video is not judged, whatever the run shows.
    gated = set(range(0, 8)) | set(range(12, 15))
    verdict = judge(values, gated=gated)
    assert verdict.verdict == "inconclusive"
    assert [r.code for r in verdict.reasons] == ["too_many_inconclusive_frames"]
    assert verdict.segments[0].sustained


def test_the_rule_is_configurable_but_one_frame_never_decides() -> None:
    values = [0.05] * 8 + [0.95, 0.95] + [0.05] * 8
    assert judge(values).verdict == "inconclusive"
    two = AggregationRule(run=SustainedRun(min_frames=2, min_duration_s=2.0))
    assert judge(values, run=two.run).verdict == "fake"
    with pytest.raises(ConfigurationError):
        SustainedRun(min_frames=1)


def test_the_deployments_rule_comes_from_settings(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    # The defaults the README documents are the rule's own.
    assert Settings(auth_disabled=True).video_rule == AggregationRule()
    monkeypatch.setenv("VERACITY_VIDEO_RUN_MIN_FRAMES", "5")
    monkeypatch.setenv("VERACITY_VIDEO_RUN_MIN_DURATION_S", "2.5")
    monkeypatch.setenv("VERACITY_VIDEO_RUN_MAX_GAP", "0")
    rule = Settings(auth_disabled=True, video_aggregation="mean").video_rule
    assert rule.run == SustainedRun(min_frames=5, min_duration_s=2.5, max_gap=0)
    assert rule.with_method(None) is rule
    assert rule.with_method("max") == AggregationRule(method="max", run=rule.run)


def test_segments_are_ordered_most_suspicious_first_and_need_two_frames() -> None:
    values = [0.8, 0.8, 0.1, 0.1, 0.99, 0.1, 0.1, 0.95, 0.96, 0.97]
    no_run = AggregationRule(run=SustainedRun(min_frames=5))
    segments = find_segments(frames(values), 10.0, THRESHOLDS, no_run)
    assert [(s.start_s, s.end_s) for s in segments] == [(6.5, 10.0), (0.0, 1.5)]
    single = AggregationRule(min_segment_frames=1, run=no_run.run)
    assert len(find_segments(frames(values), 10.0, THRESHOLDS, single)) == 3


def test_a_sustained_stretch_that_is_not_confidently_real_is_never_real() -> None:
    # An edit the model half-sees: frames 0.55-0.7 from 4 s to 8 s, under the fake point.
    values = [0.02] * 4 + [0.55, 0.7, 0.6, 0.65] + [0.02] * 24
    verdict = judge(values)
    assert verdict.verdict == "inconclusive"
    assert [r.code for r in verdict.reasons] == ["doubtful_stretch"]
    assert "between 3.50 s and 7.50 s" in verdict.reasons[0].message
    assert verdict.segments == ()
    # Two such frames, or ones that are isolated, leave the clip real.
    assert judge([0.02] * 4 + [0.6, 0.6] + [0.02] * 26).verdict == "real"
    isolated = [0.02] * 32
    for i in (3, 10, 17, 24):
        isolated[i] = 0.6
    assert judge(isolated).verdict == "real"
