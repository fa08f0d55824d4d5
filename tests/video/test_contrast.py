"""Temporal contrast: a stretch standing out from the rest of its own shot makes a video
fake; one odd frame, a stretch across a cut, or a stretch the model calls real does not.
Shots: a moved or locally edited picture stays one shot, a cut or a fade splits it."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.videofiles import write_video
from veracity.checkpoint import load_checkpoint
from veracity.errors import ConfigurationError
from veracity.inference.predictor import Predictor
from veracity.settings import Settings
from veracity.verdicts.quality import Reason
from veracity.video.aggregate import AggregationRule, judge_video
from veracity.video.analysis import FrameSource
from veracity.video.contrast import TemporalContrast, candidate_steps, find_step, logit
from veracity.video.plan import SamplingPlan, VideoLimits
from veracity.video.sampling import VideoReader
from veracity.video.shots import ShotRule, same_shot, shots, signature

from .test_aggregate import THRESHOLDS, frames

BASE = 0.4
EDIT = 0.7  # logit(0.7) - logit(0.4) = 1.25, past the default step of 1.0


def judge_with(probabilities, cuts=(), gated=frozenset(), spacing=0.5, **rule):
    """Judged with the clip split into shots at ``cuts`` (frame indices that start a shot);
    ``cuts=None``: shots not known."""
    n = len(probabilities)
    split = None
    if cuts is not None:
        starts = [0, *cuts, n]
        split = [range(a, b) for a, b in itertools.pairwise(starts)]
    return judge_video(
        frames(probabilities, gated, spacing),
        duration_s=n * spacing,
        thresholds=THRESHOLDS,
        rule=AggregationRule(**rule),
        min_duration_s=0.1,
        shots=split,
    )


def edited(n=24, first=8, last=15, base=BASE, value=EDIT) -> list[float]:
    return [value if first <= i <= last else base for i in range(n)]


def test_a_stretch_above_the_rest_of_its_shot_makes_the_video_fake() -> None:
    video = judge_with(edited())
    assert video.verdict == "fake"
    assert [r.code for r in video.reasons] == ["temporal_contrast"]
    top = video.segments[0]
    # Frames 8-15 sampled every 0.5 s: from halfway to frame 7 to halfway to frame 16.
    assert (top.start_s, top.end_s, top.frames) == (3.75, 7.75, 8)
    assert top.sustained
    assert top.fake_frames == 0
    assert top.step == pytest.approx(logit(EDIT) - logit(BASE), abs=1e-3)
    assert top.fake_prob == pytest.approx(EDIT)
    # The frames' own probability is not replaced by the contrast.
    assert video.fake_prob < THRESHOLDS.fake_threshold
    # Without the rule the same frames are only doubtful (the stretch is not fake enough).
    assert judge_with(edited(), contrast=TemporalContrast(min_step=0)).verdict == "inconclusive"
    assert judge_with(edited(), cuts=None).verdict == "inconclusive"


def test_a_smaller_step_than_the_threshold_is_not_enough() -> None:
    assert judge_with(edited(value=0.6)).verdict == "inconclusive"  # step 0.81
    assert judge_with(edited(value=0.6), contrast=TemporalContrast(min_step=0.8)).verdict == "fake"


def test_the_stretch_must_stand_out_from_both_sides() -> None:
    # A score drifting up towards the end of the shot: the last frames stand above the
    # shot's start but not above anything after them.
    drifting = [0.3] * 16 + [0.6] * 8
    assert judge_with(drifting).verdict == "inconclusive"
    # The same stretch with the picture back at its start afterwards is an edit.
    assert judge_with([0.3] * 12 + [0.6] * 8 + [0.3] * 4).verdict == "fake"
    # Higher on one side than the other: the step is from the higher side (0.5).
    video = judge_with([0.3] * 8 + [0.74] * 6 + [0.5] * 8)
    assert video.segments[0].step == pytest.approx(logit(0.74) - logit(0.5), abs=1e-3)


def test_one_odd_frame_or_a_dip_inside_is_not_a_run() -> None:
    assert judge_with(edited(first=10, last=10, value=0.95)).segments == ()
    # Two frames: below the sustained run's three.
    assert judge_with(edited(first=10, last=11)).verdict == "inconclusive"
    # Every frame must stand out: a frame back at the baseline cuts the stretch into two
    # runs of two, neither long enough.
    probabilities = edited(first=10, last=14)
    probabilities[12] = BASE
    assert judge_with(probabilities).verdict == "inconclusive"


def test_a_stretch_across_a_cut_is_not_compared_with_another_shot() -> None:
    # The same numbers as a different shot in the middle (a cut at 8 and back at 16): the
    # middle shot has no rest of its own to stand out from.
    assert judge_with(edited(), cuts=(8, 16)).verdict == "inconclusive"
    # A cut elsewhere leaves enough of the stretch's shot to compare with.
    assert judge_with(edited(n=30), cuts=(24,)).verdict == "fake"


def test_frames_the_model_calls_real_are_no_evidence() -> None:
    # 0.2 stands 2.7 logits above 0.02, but 0.2 is confidently real (under 0.25).
    assert judge_with(edited(base=0.02, value=0.2)).verdict == "real"


def test_the_stretch_must_be_the_smaller_part_of_its_shot() -> None:
    # 20 of 24 frames: any 12 of them have more edited than unedited frames as their rest.
    assert judge_with(edited(n=24, first=2, last=21)).verdict != "fake"
    # 16 of 24: 12 of them still stand out from a rest that is mostly unedited.
    assert judge_with(edited(n=24, first=4, last=19)).verdict == "fake"


def test_gated_frames_are_neither_run_nor_reference() -> None:
    # A gated frame inside the stretch breaks it into two runs too short to count.
    assert judge_with(edited(first=8, last=12), gated={10}).verdict == "inconclusive"
    # Gated frames outside are left out of the median: eight of them at 0.7 would make
    # the rest's median 0.7 and leave no step at all if they counted.
    probabilities = edited(n=32, first=20, last=24)
    probabilities[:8] = [EDIT] * 8
    video = judge_with(probabilities, gated=set(range(8)))
    assert video.verdict == "fake"
    assert video.segments[0].step == pytest.approx(logit(EDIT) - logit(BASE), abs=1e-3)
    # Below the video's abstention: 12 gated frames at 0.7 would outvote the 4 unedited
    # ones if they counted, and leave the stretch nothing to stand out from.
    shot = [range(22)]
    kept = [None] * 12 + [BASE] * 3 + [EDIT] * 4 + [BASE] * 3
    counted = [EDIT] * 12 + [BASE] * 3 + [EDIT] * 4 + [BASE] * 3
    check = {"real_threshold": 0.25, "long_enough": lambda a, b: b - a >= 2}
    found = find_step(kept, shot, contrast=TemporalContrast(), **check)
    assert (found.first, found.last) == (15, 18)
    assert find_step(counted, shot, contrast=TemporalContrast(), **check) is None


def test_a_sustained_run_the_stretch_does_not_contain_stays_first() -> None:
    # Every frame fake: the whole clip is the sustained run, nothing stands out inside it.
    video = judge_with([0.9] * 24)
    assert video.verdict == "fake"
    assert video.reasons == ()
    assert video.segments[0].step is None
    assert (video.segments[0].start_s, video.segments[0].end_s) == (0.0, 12.0)


def test_a_sustained_run_at_the_peak_of_a_stretch_gives_way_to_the_stretch() -> None:
    # Frames 11-13 are past the fake operating point (a sustained run of 1.5 s), the whole
    # edit 8-15 stands out from its shot: the stretch is where the edit is.
    probabilities = edited(first=8, last=15)
    probabilities[11:14] = [0.9] * 3
    video = judge_with(probabilities)
    assert video.verdict == "fake"
    assert video.reasons == ()  # fake_prob is past the fake operating point by itself
    assert [(s.start_s, s.end_s, s.step is not None) for s in video.segments] == [
        (3.75, 7.75, True)
    ]
    # The sustained run's mean still raises the video's fake_prob, as it always did.
    assert video.fake_prob == pytest.approx(0.9)


def test_the_longest_qualifying_run_is_named() -> None:
    probabilities = edited(first=8, last=15)
    probabilities[9:12] = [0.74] * 3  # frames 9-11 alone: the largest step (1.45)
    top = judge_with(probabilities).segments[0]
    assert top.step == pytest.approx(logit(EDIT) - logit(BASE), abs=1e-3)
    assert (top.start_s, top.end_s) == (3.75, 7.75)


def test_a_contrast_run_raises_a_confidently_real_aggregate_to_its_own() -> None:
    # 36 frames at 0.05 and 4 at 0.3: the aggregate says real (0.05), the stretch stands
    # 2.1 logits above the rest. A fake answer must not carry a real-looking probability.
    video = judge_with(edited(n=40, first=10, last=13, base=0.05, value=0.3))
    assert video.verdict == "fake"
    assert video.fake_prob == pytest.approx(0.3)


def test_runs_of_fake_frames_inside_the_stretch_are_part_of_it() -> None:
    probabilities = edited(first=8, last=15)
    probabilities[10:12] = [0.8, 0.8]  # two fake frames: a segment, not a sustained one
    video = judge_with(probabilities)
    assert video.verdict == "fake"
    assert [s.step is not None for s in video.segments] == [True]


def test_find_step_without_shots_or_frames() -> None:
    rule = TemporalContrast()
    found = find_step([], [], real_threshold=0.25, long_enough=lambda a, b: True, contrast=rule)
    assert found is None


@pytest.mark.parametrize(
    "kwargs",
    [{"min_step": -1}, {"min_step": float("nan")}, {"max_share": 0.6}, {"min_side": 1}],
)
def test_contrast_rule_is_validated(kwargs) -> None:
    with pytest.raises(ConfigurationError):
        TemporalContrast(**kwargs)


def test_settings_carry_the_contrast_threshold() -> None:
    settings = Settings(auth_disabled=True, video_contrast_min_step=0.9)
    assert settings.video_rule.contrast.min_step == 0.9
    assert Settings(auth_disabled=True).video_rule.contrast == TemporalContrast()


def _picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((320, 240), Image.Resampling.BICUBIC)
    return np.asarray(big)


def test_shots_follow_the_picture_not_a_local_change() -> None:
    a, b = _picture(1), _picture(2)
    moved = np.roll(a, 4, axis=1)  # a pan of a few pixels
    patched = a.copy()
    patched[60:140, 100:180] = b[60:140, 100:180]  # 8% of the frame replaced
    faded = (a * 0.4).astype(np.uint8)  # the same layout, far darker
    sigs = [signature(Image.fromarray(x)) for x in (a, moved, patched, a, b, b, faded)]
    rule = ShotRule()
    assert same_shot(sigs[0], sigs[1], rule)
    assert same_shot(sigs[0], sigs[2], rule)
    assert not same_shot(sigs[3], sigs[4], rule)
    assert not same_shot(sigs[5], sigs[6], rule)
    assert shots(sigs, rule) == [range(0, 4), range(4, 6), range(6, 7)]
    assert shots([], rule) == []
    flat = signature(Image.new("RGB", (64, 48), (90, 90, 90)))
    assert same_shot(flat, flat, rule)


def test_a_slow_dissolve_or_a_long_pan_becomes_another_shot() -> None:
    a, b = _picture(1), _picture(2)
    rule = ShotRule()
    # Each step of the dissolve is small; together they reach another picture.
    dissolve = [(a * (1 - t) + b * t).astype(np.uint8) for t in np.linspace(0, 1, 12)]
    sigs = [signature(Image.fromarray(x)) for x in dissolve]
    assert all(same_shot(x, y, rule) for x, y in itertools.pairwise(sigs))
    assert len(shots(sigs, rule)) >= 2
    pan = [np.roll(a, 8 * i, axis=1) for i in range(40)]
    assert len(shots([signature(Image.fromarray(x)) for x in pan], rule)) >= 2


def test_a_video_source_splits_its_sampled_frames_at_the_cut(tiny_checkpoint: Path) -> None:
    a, b = _picture(1), _picture(2)

    def cut_at_ten(index: int, width: int, height: int) -> np.ndarray:
        return np.roll(a if index < 10 else b, index, axis=1)  # a slow pan, then a cut

    clip = write_video(seconds=2.0, fps=10, width=320, height=240, pixels_of=cut_at_ten)
    predictor = Predictor(load_checkpoint(tiny_checkpoint), torch.device("cpu"))
    with VideoReader(clip, VideoLimits()) as reader:
        source = FrameSource(predictor, reader, SamplingPlan(count=10), VideoLimits(), started=0.0)
        while source.next() is not None:
            pass
        # Samples at 0.1, 0.3, ... s are frames 1, 3, ..., 19: five of each picture.
        assert source.shots() == [range(0, 5), range(5, 10)]


def test_reason_text_names_the_stretch() -> None:
    reason: Reason = judge_with(edited()).reasons[0]
    assert "3.75 s and 7.75 s" in reason.message
    assert "logits" in reason.message


def test_a_stretch_just_above_the_real_point_never_reads_as_real() -> None:
    # Frames a hair above 0.25 among frames at 0.05: a rounded mean would land on 0.25,
    # which classifies as real; the video's fake_prob must stay above it.
    video = judge_with(edited(n=32, first=12, last=19, base=0.05, value=0.25 + 4e-5))
    assert video.verdict == "fake"
    assert video.fake_prob > THRESHOLDS.real_threshold
    assert THRESHOLDS.classify(video.fake_prob) != "real"


def test_segments_never_overlap_the_stretch() -> None:
    # A run of fake frames starting inside the stretch and crossing its end (past a frame
    # back at the baseline) is part of it, not a segment beside it.
    probabilities = edited(n=32, first=8, last=13)
    probabilities[13] = 0.8
    probabilities[15] = 0.8  # frame 14 stays at the baseline: the stretch ends at 13
    video = judge_with(probabilities)
    assert video.segments[0].step is not None
    top = video.segments[0]
    assert all(s.end_s <= top.start_s or s.start_s >= top.end_s for s in video.segments[1:])


def _brute_force(probabilities, shot, real_threshold, long_enough, rule):
    """Every qualifying run straight from the definition (contrast.py's docstring)."""
    usable = [i for i in shot if probabilities[i] is not None]
    limit = int(rule.max_share * len(usable))
    found = set()
    for first in shot:
        for last in range(first, shot.stop):
            run = range(first, last + 1)
            ok = all(
                probabilities[i] is not None and probabilities[i] > real_threshold for i in run
            )
            before = [logit(probabilities[i]) for i in usable if i < first]
            after = [logit(probabilities[i]) for i in usable if i > last]
            if not ok or len(run) > limit or not long_enough(first, last):
                continue
            if min(len(before), len(after)) < rule.min_side:
                continue
            reference = max(float(np.median(before)), float(np.median(after)))
            found.add(
                (first, last, round(min(logit(probabilities[i]) for i in run) - reference, 4))
            )
    return found


def test_the_search_finds_exactly_the_runs_the_definition_names() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(4, 28))
        probabilities = [
            None if rng.random() < 0.1 else float(rng.choice([0.1, 0.3, 0.5, 0.7, 0.9, 1.0]))
            for _ in range(n)
        ]
        start = int(rng.integers(0, 3))
        shot = range(min(start, n - 1), n)
        rule = TemporalContrast(min_side=int(rng.integers(2, 4)), max_share=0.5)
        minimum = int(rng.integers(1, 4))
        check = {"real_threshold": 0.25, "long_enough": lambda a, b, m=minimum: b - a + 1 >= m}
        steps = list(candidate_steps(probabilities, [shot], contrast=rule, **check))
        assert len(steps) == len({(s.first, s.last) for s in steps})
        assert {(s.first, s.last, s.step) for s in steps} == _brute_force(
            probabilities, shot, 0.25, check["long_enough"], rule
        )
