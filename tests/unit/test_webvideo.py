"""Stills as ordinary web video: real H.264 and VP9 in 4:2:0, a visible but mild loss."""

from __future__ import annotations

import io
from dataclasses import replace

import av
import cv2
import numpy as np
import pytest

from tests.unit.test_pairs import textured
from veracity.edits.webvideo import (
    WebVideoOptions,
    draw_web_video,
    encode_clip,
    frame_size,
    render_motion,
    switch_motion,
    web_video,
)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


def test_the_pyav_wheel_has_both_web_encoders():
    for name in ("libx264", "libvpx-vp9"):
        assert av.codec.Codec(name, "w").name == name


def test_frame_size_keeps_the_aspect_within_720p_and_even():
    assert frame_size(1500, 2000, (1280, 720)) == (960, 720)
    assert frame_size(1000, 4000, (1280, 720)) == (1280, 320)
    assert frame_size(1280, 720, (1280, 720)) == (720, 1280)  # portrait: long side 1280
    assert frame_size(301, 451, (1280, 720)) == (450, 300)  # never enlarged, even sides


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_a_still_through_web_video_is_changed_by_the_codec_but_stays_close(codec):
    still = textured(3, 300, 420)
    options = WebVideoOptions(codecs=(codec,), frames=6)
    params = draw_web_video(np.random.default_rng(1), 300, 420, options)
    clip = web_video(still, params)
    rendered, _ = render_motion(still, params)
    assert len(clip.frames) == 6
    assert all(f.shape == (params.height, params.width, 3) for f in clip.frames)
    for decoded, source in zip(clip.frames, rendered, strict=True):
        assert 25.0 < psnr(decoded, source) < 60.0  # the codec touched it, mildly
    with av.open(io.BytesIO(encode_clip(rendered, params))) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name in {"h264", "vp9", "libvpx-vp9"}
        assert stream.codec_context.pix_fmt == "yuv420p"
    low, high = options.crf_range(codec)
    assert low <= params.crf <= high


def test_the_camera_moves_over_the_still():
    params = draw_web_video(np.random.default_rng(2), 300, 420, WebVideoOptions(frames=5))
    params = replace(params, start=(200.0, 150.0, 0.85), end=(220.0, 150.0, 1.0))
    frames, _ = render_motion(textured(4, 300, 420), params)
    assert not np.array_equal(frames[0], frames[-1])


def test_an_edit_made_before_encoding_survives_it_under_its_moved_mask():
    still = textured(5, 300, 420)
    fake = still.copy()
    mask = np.zeros(still.shape[:2], dtype=bool)
    mask[100:180, 150:260] = True
    fake[mask] = 255 - fake[mask]
    params = draw_web_video(np.random.default_rng(3), 300, 420, WebVideoOptions(frames=4))
    real_clip = web_video(still, params)
    fake_clip = web_video(fake, params, mask)
    assert fake_clip.masks is not None
    for real, edited, moved in zip(
        real_clip.frames, fake_clip.frames, fake_clip.masks, strict=True
    ):
        assert moved.shape == real.shape[:2]
        assert 0.05 < moved.mean() < 0.12
        diff = np.abs(real.astype(int) - edited.astype(int)).mean(-1)
        assert diff[moved].mean() > 40
        assert diff[~moved].mean() < 8


def test_the_same_generator_draws_the_same_clip():
    a = draw_web_video(np.random.default_rng(9), 480, 640)
    b = draw_web_video(np.random.default_rng(9), 480, 640)
    assert a == b
    assert a.width == 640
    assert a.height == 480


def _edited_still() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    still = textured(6, 300, 420)
    mask = np.zeros(still.shape[:2], dtype=bool)
    mask[60:140, 200:300] = True
    edited = still.copy()
    edited[mask] = 255 - edited[mask]
    return still, edited, mask


def test_a_switched_clip_shows_the_edit_only_in_its_frames_and_only_under_its_mask():
    still, edited, mask = _edited_still()
    params = draw_web_video(np.random.default_rng(4), 300, 420, WebVideoOptions(frames=8))
    originals, _ = render_motion(still, params)
    changed, moved = render_motion(edited, params, mask)
    assert moved is not None

    switched = list(switch_motion(still, edited, mask, params, range(3, 6)))

    assert len(switched) == 8
    for index, (frame, frame_mask) in enumerate(switched):
        if index in range(3, 6):
            assert np.array_equal(frame, changed[index])
            assert np.array_equal(frame_mask, moved[index])
            assert frame_mask.mean() > 0.04
            diff = np.abs(frame.astype(int) - originals[index].astype(int)).max(-1)
            assert diff[frame_mask].mean() > 40
            # Bilinear resampling reaches a pixel or so past the nearest-neighbour mask.
            near = cv2.dilate(frame_mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            assert not diff[~near].any()
        else:
            assert np.array_equal(frame, originals[index])
            assert not frame_mask.any()


def test_no_edited_frame_is_the_real_clip_and_a_bad_run_is_refused():
    still, edited, mask = _edited_still()
    params = draw_web_video(np.random.default_rng(5), 300, 420, WebVideoOptions(frames=4))
    originals, _ = render_motion(still, params)
    plain = [frame for frame, _ in switch_motion(still, edited, mask, params, range(0))]
    assert all(np.array_equal(a, b) for a, b in zip(plain, originals, strict=True))
    for bad in (range(2, 5), range(0, 4, 2)):
        with pytest.raises(ValueError, match="edited_frames"):
            next(switch_motion(still, edited, mask, params, bad))
    with pytest.raises(ValueError, match="size"):
        next(switch_motion(still, edited[:, :-2], mask, params, range(1, 2)))
