"""Frame sampling: counts, timestamps, keyframe seeks, variable frame rate, rotation, codecs."""

import time

import numpy as np
import pytest

from tests.videofiles import frame_index, write_video
from veracity.errors import VideoTooLargeError
from veracity.video.container import detect_container
from veracity.video.plan import SamplingPlan, VideoLimits
from veracity.video.sampling import VideoReader


def sample(data: bytes, plan: SamplingPlan, limits: VideoLimits | None = None):
    with VideoReader(data, limits or VideoLimits()) as reader:
        return reader, list(reader.sample(plan))


def test_evenly_spaced_frames_have_their_own_timestamps() -> None:
    _, frames = sample(write_video(seconds=3.0, fps=10), SamplingPlan(count=6))
    assert len(frames) == 6
    # Targets are the centres of six half-second intervals; each frame is the decoded one
    # nearest its target (or the keyframe within half a spacing of it).
    assert [f.target_s for f in frames] == pytest.approx([0.25, 0.75, 1.25, 1.75, 2.25, 2.75])
    for frame in frames:
        assert abs(frame.timestamp_s - frame.target_s) < 0.25
        # The pixels are those of the frame the timestamp names.
        assert frame_index(np.asarray(frame.image)) == round(frame.timestamp_s * 10)
    times = [f.timestamp_s for f in frames]
    assert times == sorted(set(times))


def test_one_frame_every_s_seconds() -> None:
    _, frames = sample(write_video(seconds=4.0, fps=10), SamplingPlan(every_s=1.0))
    assert [f.target_s for f in frames] == pytest.approx([0.5, 1.5, 2.5, 3.5])
    assert [f.timestamp_s for f in frames] == pytest.approx([0.5, 1.5, 2.5, 3.5])


def test_variable_frame_rate_reports_true_presentation_times() -> None:
    stamps = [0.0, 0.1, 0.2, 0.5, 0.55, 1.4, 1.5, 1.9]
    data = write_video(timestamps=stamps)
    _, frames = sample(data, SamplingPlan(count=8))
    for frame in frames:
        assert min(abs(frame.timestamp_s - s) for s in stamps) < 1e-6
        assert frame_index(np.asarray(frame.image)) == stamps.index(
            min(stamps, key=lambda s: abs(s - frame.timestamp_s))
        )


def test_keyframe_seeks_skip_the_frames_between_samples() -> None:
    # 20 s at 10 fps, a keyframe every second: four samples need only a few frames each.
    data = write_video(seconds=20.0, fps=10, width=64, height=64, keyframe_interval=10)
    reader, frames = sample(data, SamplingPlan(count=4))
    assert len(frames) == 4
    assert reader.stats.seeks >= 3
    assert reader.stats.decoded < 200 / 4


def test_a_keyframe_inside_each_interval_costs_one_decode_per_sample() -> None:
    # A keyframe every second, a sample every two: each sample is its interval's keyframe,
    # decoded alone (the decoder drained, not fed the frames after it to release it).
    data = write_video(seconds=20.0, fps=10, keyframe_interval=10, b_frames=2)
    reader, frames = sample(data, SamplingPlan(count=10))
    assert len(frames) == 10
    assert reader.stats.decoded == 10
    for frame in frames:
        assert abs(frame.timestamp_s - frame.target_s) <= 1.0
        assert frame_index(np.asarray(frame.image)) == round(frame.timestamp_s * 10) % 50


@pytest.mark.parametrize(("rotation", "corner"), [(90, "bottom"), (-90, "top"), (180, "right")])
def test_display_rotation_is_applied(rotation: int, corner: str) -> None:
    # The stored frame's left columns are white; the display matrix turns them to a side.
    data = write_video(rotation=rotation, width=160, height=96, seconds=0.5, left_marker=True)
    reader, frames = sample(data, SamplingPlan(count=1))
    pixels = np.asarray(frames[0].image).mean(axis=2)
    assert pixels.shape == ((160, 96) if rotation in (90, -90) else (96, 160))
    edges = {
        "top": pixels[:8].mean(),
        "bottom": pixels[-8:].mean(),
        "left": pixels[:, :8].mean(),
        "right": pixels[:, -8:].mean(),
    }
    assert max(edges, key=edges.__getitem__) == corner
    assert reader.stats.rotation == rotation % 360


@pytest.mark.parametrize(
    ("container", "codec", "name"),
    [
        ("mp4", "libx264", "h264"),
        ("mov", "libx265", "hevc"),
        ("webm", "libvpx", "vp8"),
        ("webm", "libvpx-vp9", "vp9"),
        ("mkv", "libsvtav1", "av1"),
    ],
)
def test_every_accepted_codec_decodes(container: str, codec: str, name: str) -> None:
    reader, frames = sample(
        write_video(container=container, codec=codec, seconds=1.0), SamplingPlan(count=3)
    )
    assert reader.info.codec == name
    assert len(frames) == 3


def test_a_plan_beyond_the_frame_limit_is_refused() -> None:
    data = write_video(seconds=2.0)
    with pytest.raises(VideoTooLargeError, match="between 1 and 4"):
        sample(data, SamplingPlan(count=5), VideoLimits(max_samples=4))
    with pytest.raises(VideoTooLargeError, match="Sample less often"):
        sample(data, SamplingPlan(every_s=0.1), VideoLimits(max_samples=4))


def test_the_decode_budget_counts_decoding_only() -> None:
    data = write_video(seconds=1.0)
    with VideoReader(data, VideoLimits(decode_timeout_s=5.0)) as reader:
        frames = reader.sample(SamplingPlan(count=3))
        next(frames)
        time.sleep(0.3)  # the caller's time between frames is not the file's cost
        assert len([next(frames), next(frames)]) == 2
        assert reader._spent < 5.0


def test_containers_are_recognised_by_magic_bytes() -> None:
    assert detect_container(write_video(container="mp4")[:12]) == "mp4"
    assert detect_container(write_video(container="webm", codec="libvpx")[:12]) == "matroska"
    assert detect_container(b"\xff\xd8\xff\xe0" + b"\0" * 8) is None


def test_a_file_name_is_never_read_as_an_ffmpeg_protocol(tmp_path) -> None:
    # A local file whose name FFmpeg would parse as the concat protocol.
    odd = tmp_path / "concat:x.mp4|y.mp4"
    odd.write_bytes(write_video(seconds=1.0))
    with VideoReader(odd, VideoLimits()) as reader:
        assert len(list(reader.sample(SamplingPlan(count=2)))) == 2
