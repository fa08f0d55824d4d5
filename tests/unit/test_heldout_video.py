"""The held-out video arm: which frames are edited, the segment's overlap with the edit, the
video goal lines, and a whole run on synthetic photographs with a tiny checkpoint.

The whole run checks that the clips and the counts add up, never that the goals pass: a
tiny untrained model says nothing about them.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.unit.test_heldout_report import _synthetic_list
from veracity.checkpoint import load_checkpoint
from veracity.corpus.heldout import read_heldout_manifest
from veracity.evaluation.heldout import HeldOutOptions
from veracity.evaluation.heldout_plots import write_video_plot
from veracity.evaluation.heldout_report import build_heldout_report, format_summary
from veracity.evaluation.heldout_video import (
    HeldOutClip,
    HeldOutVideoOptions,
    choose_photos,
    judge_heldout_videos,
)
from veracity.evaluation.heldout_video_report import video_goals, video_section
from veracity.evaluation.localisation import interval_overlap
from veracity.evaluation.measures import VERDICTS
from veracity.inference.predictor import Predictor
from veracity.settings import Settings
from veracity.video.plan import SamplingPlan

# ---- the edit's frames and its interval ---------------------------------------------------


def test_the_edited_frames_are_those_on_screen_between_the_two_timestamps() -> None:
    options = HeldOutVideoOptions()
    assert options.frames == 96
    assert options.edited_frames == range(32, 64)
    assert options.edit_interval == (4.0, 8.0)
    # At 3 fps, 1.1 s falls inside frame 3 (1.0-1.33 s): the first frame starting after it is 4.
    odd = HeldOutVideoOptions(seconds=4, fps=3, edit=(1.1, 2.0))
    assert odd.edited_frames == range(4, 6)
    assert odd.edit_interval == (4 / 3, 2.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"edit": (4.0, 13.0)}, "within"),
        ({"edit": (5.0, 5.0)}, "within"),
        ({"edit": (1.05, 1.1), "fps": 8}, "no frame"),
        ({"codecs": ("av1",)}, "codecs"),
        ({"kinds": ("self_blend",)}, "kinds"),
        ({"videos": -1}, "videos"),
    ],
)
def test_options_that_cannot_make_the_clips_are_refused(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        HeldOutVideoOptions(**changes)  # type: ignore[arg-type]


def test_clips_are_judged_with_the_services_defaults() -> None:
    settings = Settings(_env_file=None, auth_disabled=True)  # type: ignore[call-arg]
    options = HeldOutVideoOptions()
    assert options.plan == SamplingPlan(count=settings.video_frames)
    assert options.rule == settings.video_rule
    assert options.seconds <= settings.video_max_duration_s


def test_the_top_segment_overlaps_the_edit_by_intersection_over_union() -> None:
    assert interval_overlap((4.0, 8.0), (4.0, 8.0)) == (True, 1.0)
    assert interval_overlap((3.0, 6.0), (4.0, 8.0)) == (True, pytest.approx(2 / 5))
    assert interval_overlap((5.0, 6.0), (4.0, 8.0)) == (True, pytest.approx(1 / 4))
    assert interval_overlap((0.0, 4.0), (4.0, 8.0)) == (False, 0.0)  # they only meet
    assert interval_overlap((9.0, 12.0), (4.0, 8.0)) == (False, 0.0)
    with pytest.raises(ValueError, match="ends before"):
        interval_overlap((6.0, 5.0), (4.0, 8.0))


def test_photographs_are_chosen_from_each_source_in_turn() -> None:
    photos = read_heldout_manifest()
    sources = list(dict.fromkeys(p.source for p in photos))

    chosen = choose_photos(photos, len(sources) + 1)

    assert [p.source for p in chosen[: len(sources)]] == sources
    first = [p for p in photos if p.source == sources[0]]
    assert chosen[0] == first[0]
    assert chosen[-1] == first[1]
    assert choose_photos(photos, 0) == []
    assert len(choose_photos(photos, 10_000)) == len(photos)


# ---- the goal lines ------------------------------------------------------------------------


def _clip(kind: str | None, verdict: str, **fields: object) -> HeldOutClip:
    values: dict[str, object] = {
        "source": "scikit-image",
        "photo": "scikit-image/skimage/data/coffee.png",
        "codec": "h264",
        "crf": 23,
        "kind": kind,
        "label": "real" if kind is None else "fake",
        "verdict": verdict,
        "edit_interval": None if kind is None else (4.0, 8.0),
        **fields,
    }
    return HeldOutClip(**values)  # type: ignore[arg-type]


def test_video_goals_read_the_counts_they_name() -> None:
    clips = [
        *[_clip(None, "real") for _ in range(3)],
        _clip(None, "inconclusive", reasons=["suspicious_segments"], codec="vp9"),
        _clip(None, "error", error="cannot decode"),
        _clip("splice", "fake", top_segment=(3.9, 8.1), overlaps=True, iou=0.95),
        _clip("splice", "fake", top_segment=(6.0, 12.0), overlaps=True, iou=0.25, codec="vp9"),
        _clip("smooth", "inconclusive", top_segment=(4.0, 8.0), overlaps=True, iou=1.0),
        _clip("smooth", "real"),
    ]
    video = video_section(clips, HeldOutVideoOptions())
    real_goal, edit_goal = video_goals(video)

    assert real_goal.name == "video_real"
    assert real_goal.measured == pytest.approx(3 / 4)
    assert real_goal.detail == "3 of 4; fake: 0"
    assert not real_goal.passed
    assert edit_goal.name == "video_edit_found"
    # Only a clip judged fake counts, and only with its top segment at the edit.
    assert edit_goal.measured == pytest.approx(1 / 4)
    assert edit_goal.detail == "1 of 4; fake: 2, top segment overlapping the edit: 2"
    assert not edit_goal.passed
    assert video["real"]["by_codec"]["vp9"]["reasons"] == {"suspicious_segments": 1}
    assert video["edited"]["overall"]["timing"]["mean_iou"] == pytest.approx(0.6)
    assert video["edited"]["by_kind"]["splice"]["fake"] == 2
    assert video["edited"]["overall"]["timing"]["overlap_rate_any_verdict"] == 1.0
    assert len(video["errors"]) == 1

    every = video_goals(
        video_section(
            [_clip(None, "real"), _clip("inpaint", "fake", iou=0.5)], HeldOutVideoOptions()
        )
    )
    assert all(goal.passed for goal in every)


def test_the_report_places_the_video_goals_in_the_issues_order() -> None:
    report = build_heldout_report(
        [],
        checkpoint={},
        options=HeldOutOptions(),
        clips=[_clip(None, "real"), _clip("inpaint", "inconclusive")],
        video_options=HeldOutVideoOptions(),
    )
    names = [goal["name"] for goal in report["goals"]]
    assert names[-3:] == ["video_real", "video_edit_found", "calibration"]
    summary = format_summary(report)
    assert "real clips (truth: real)" in summary
    assert "kind inpaint" in summary
    assert "edit from 4 s to 8 s" in summary
    without = build_heldout_report([], checkpoint={}, options=HeldOutOptions())
    assert "video" not in without
    assert "video_real" not in [goal["name"] for goal in without["goals"]]


# ---- a whole run ------------------------------------------------------------------------


# Short, small clips and 8 frames each (the service's 32 are checked above): seconds, not
# minutes, with a tiny model.
SMALL = HeldOutVideoOptions(
    videos=2, seconds=4.0, fps=8, edit=(1.5, 3.0), max_side=256, plan=SamplingPlan(count=8)
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> list[HeldOutClip]:
    root = tmp_path_factory.mktemp("heldout-video")
    photos = _synthetic_list(root)
    predictor = Predictor(load_checkpoint(tiny_checkpoint), torch.device("cpu"))
    return judge_heldout_videos(predictor, photos, root, SMALL, progress=False)


@pytest.mark.slow
def test_each_photo_gives_a_real_and_an_edited_clip_per_codec(tiny_run: list[HeldOutClip]) -> None:
    clips = tiny_run

    assert len(clips) == 2 * 2 * 2
    assert all(c.error is None for c in clips)
    assert {(c.photo.rsplit("/", 1)[-1], c.codec, c.kind) for c in clips} == {
        (photo, codec, kind)
        for photo, kind in (("picture0.png", "splice"), ("picture1.png", "copy_move"))
        for codec in ("h264", "vp9")
        for kind in (None, kind)
    }
    for clip in clips:
        assert clip.crf == {"h264": 23, "vp9": 34}[clip.codec]
        assert clip.label == ("real" if clip.kind is None else "fake")
        assert clip.verdict in VERDICTS
        assert clip.frames_analysed == len(clip.frames) == 8
        assert sum(clip.frame_reasons.values()) >= clip.frames_analysed - clip.frames_used
        assert clip.duration_s == pytest.approx(4.0, abs=0.2)
        assert max(clip.width, clip.height) <= 256
        assert all(0.0 <= t <= clip.duration_s for t, _ in clip.frames)
        if clip.kind is None:
            assert clip.edit_interval is None
            assert clip.edited_share is None
            assert clip.iou is None
        else:
            assert clip.edit_interval == (1.5, 3.0)
            assert 0.0 < (clip.edited_share or 0.0) < 0.25
        if clip.kind is not None and clip.top_segment is not None:
            assert (clip.overlaps, clip.iou) == (
                interval_overlap(clip.top_segment, (1.5, 3.0))[0],
                pytest.approx(interval_overlap(clip.top_segment, (1.5, 3.0))[1], abs=1e-4),
            )


@pytest.mark.slow
def test_the_video_counts_add_up_and_are_drawn(tiny_run: list[HeldOutClip], tmp_path: Path) -> None:
    video = video_section(tiny_run, SMALL)

    assert video["clips"] == 8
    assert video["photographs"] == 2
    for truth in ("real", "edited"):
        overall = video[truth]["overall"]
        assert overall["images"] == 4
        assert overall["real"] + overall["inconclusive"] + overall["fake"] == 4
        assert sum(g["images"] for g in video[truth]["by_codec"].values()) == 4
    where = video["edited"]["overall"]["timing"]
    fakes = [c for c in tiny_run if c.kind is not None and c.verdict == "fake"]
    assert where["judged_fake"] == len(fakes)
    assert where["at_edit"] == sum(1 for c in fakes if (c.iou or 0.0) >= 0.5)
    for goal in video_goals(video):
        assert goal.line().startswith("PASS" if goal.passed else "FAIL")
        assert not math.isnan(goal.measured)
    assert write_video_plot(video, tmp_path).read_bytes().startswith(b"\x89PNG")


def test_a_photograph_that_cannot_be_read_counts_as_error_clips(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    photos = _synthetic_list(tmp_path)
    (tmp_path / photos[0].entry.local_path).write_bytes(b"not an image")
    predictor = Predictor(load_checkpoint(tiny_checkpoint), torch.device("cpu"))
    options = HeldOutVideoOptions(videos=1, seconds=2.0, edit=(0.5, 1.0), max_side=128)

    clips = judge_heldout_videos(predictor, photos, tmp_path, options, progress=False)

    assert [(c.codec, c.kind, c.verdict) for c in clips] == [
        ("h264", None, "error"),
        ("h264", "splice", "error"),
        ("vp9", None, "error"),
        ("vp9", "splice", "error"),
    ]
    assert all(c.error for c in clips)
