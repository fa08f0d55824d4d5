"""The video commands: make-sample-videos, extract-frames, predict on a video."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SYNTHETIC_CHECKPOINT
from tests.videofiles import frame_index, write_video
from veracity.cli import main


def lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_extract_frames_writes_lossless_frames_with_timestamps(tmp_path: Path, capsys) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(write_video(seconds=3.0, fps=10))
    out = tmp_path / "frames"
    assert (
        main(["extract-frames", str(video), "--out", str(out), "--every", "1", "--no-progress"])
        == 0
    )
    records = lines(capsys)
    assert [r["timestamp_s"] for r in records[:-1]] == pytest.approx([0.5, 1.5, 2.5])
    assert records[-1] == {"video": str(video), "images": 3, "out": str(out)}
    for record in records[:-1]:
        pixels = np.asarray(Image.open(record["file"]))
        assert frame_index(pixels) == round(record["timestamp_s"] * 10)


def test_extract_frames_refuses_what_is_not_a_video(tmp_path: Path, capsys) -> None:
    image = tmp_path / "x.mp4"
    image.write_bytes(b"\xff\xd8\xff\xe0 not a video")
    assert main(["extract-frames", str(image), "--out", str(tmp_path / "o")]) == 2
    assert "not an MP4, MOV, WebM or MKV" in capsys.readouterr().err


def test_predict_finds_the_manipulated_segment_of_a_sample_video(tmp_path: Path, capsys) -> None:
    out = tmp_path / "videos"
    assert main(["make-sample-videos", "--out", str(out), "--seconds", "6"]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["manipulated_s"] for m in manifest] == [None, [2.0, 4.0]]
    files = [m["file"] for m in manifest]
    # The synthetic model: the sample videos are its generated scenes, with known answers.
    args = ["predict", *files, "--count", "12", "--no-progress"]
    assert main([*args, "--checkpoint", str(SYNTHETIC_CHECKPOINT)]) == 0
    real, manipulated = lines(capsys)
    assert real["verdict"] == "real"
    assert real["segments"] == []
    assert manipulated["verdict"] in ("fake", "inconclusive")
    top = manipulated["segments"][0]
    assert top["start_s"] == pytest.approx(2.0, abs=0.5)
    assert top["end_s"] == pytest.approx(4.0, abs=0.5)
    assert len(manipulated["timeline"]) == 12


def test_predict_takes_the_services_sustained_run_rule(tmp_path: Path, capsys) -> None:
    out = tmp_path / "videos"
    assert main(["make-sample-videos", "--out", str(out), "--seconds", "6"]) == 0
    capsys.readouterr()
    manipulated = json.loads((out / "manifest.json").read_text())[1]["file"]
    args = ["predict", manipulated, "--count", "12", "--no-progress"]
    args += ["--checkpoint", str(SYNTHETIC_CHECKPOINT)]
    # A run longer than the clip's 12 samples can never be sustained: the segment stays,
    # and the video is not called fake for it.
    assert main([*args, "--run-min-frames", "13"]) == 0
    (strict,) = lines(capsys)
    assert strict["segments"]
    assert not strict["segments"][0]["sustained"]
    assert strict["verdict"] != "fake"
    # One frame never decides a video, whatever the flags say.
    assert main([*args, "--run-min-frames", "1"]) == 2
    assert "min_frames >= 2" in capsys.readouterr().err
    assert main([*args, "--run-min-duration", "nan"]) == 2
    assert "a finite min_duration_s" in capsys.readouterr().err
