"""POST /infer/video over HTTP: the timeline finds a manipulated stretch, limits, hostile
files, and fairness between video and image clients."""

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient

from tests.api.asgi import call, half_then_disconnect, multipart
from tests.api.conftest import API_KEY, assert_error, infer, jpeg_bytes, make_settings, serving
from tests.conftest import SYNTHETIC_CHECKPOINT
from tests.videofiles import patch_box, write_audio_only, write_live_webm, write_video
from veracity.video.samples import SampleVideoSpec, write_sample_video

HEADERS = {"X-API-Key": API_KEY}


def post_video(client: TestClient, data: bytes, name: str = "clip.mp4", **params):
    return client.post(
        "/infer/video",
        files={"file": (name, data, "video/mp4")},
        headers=HEADERS,
        params=params,
    )


@pytest.fixture(scope="module")
def manipulated_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("videos") / "manipulated.mp4"
    spec = SampleVideoSpec(seconds=6.0, fps=5, size=(384, 256), manipulated=(2.0, 4.0))
    write_sample_video(path, seed=3, spec=spec)
    return path.read_bytes()


@pytest.fixture(scope="module")
def demo_client() -> Iterator[TestClient]:
    settings = make_settings(
        SYNTHETIC_CHECKPOINT, video_max_upload_mb=8, video_max_duration_s=30, video_frames=12
    )
    with serving(settings) as client:
        yield client


def test_the_timeline_finds_the_manipulated_stretch(demo_client, manipulated_video) -> None:
    response = post_video(demo_client, manipulated_video)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["frames_analysed"] == 12
    assert body["duration_s"] == pytest.approx(6.0, abs=0.25)
    assert body["video"]["codec"] == "h264"
    assert body["aggregation"]["method"] == "confident"
    # Frames outside [2, 4) are judged real; inside, they lean fake, most past the
    # operating point.
    inside = [f for f in body["timeline"] if 2.0 <= f["timestamp_s"] < 4.0]
    for frame in body["timeline"]:
        if frame not in inside:
            assert frame["verdict"] == "real", frame
    assert all(f["fake_prob"] > 0.5 for f in inside)
    assert sum(f["verdict"] == "fake" for f in inside) >= len(inside) - 1
    top = body["segments"][0]
    assert top["start_s"] == pytest.approx(2.0, abs=0.5)
    assert top["end_s"] == pytest.approx(4.0, abs=0.5)
    assert top["fake_prob"] > 0.75
    # A third of the video is manipulated: a sustained run (README, "Video"), so the video
    # is fake whatever the confident rule makes of the whole, with the run's probability.
    assert top["sustained"] is True
    assert body["verdict"] == "fake"
    assert body["reasons"] == []
    assert body["fake_prob"] >= top["fake_prob"]
    assert body["request_id"] == response.headers["x-request-id"]


def test_aggregation_and_sampling_options(demo_client, manipulated_video) -> None:
    body = post_video(demo_client, manipulated_video, every_s=1.0, aggregation="max").json()
    assert body["frames_analysed"] == 6
    assert body["aggregation"]["method"] == "max"
    assert body["verdict"] == "fake"  # the most suspicious frame decides


def test_a_real_video_is_real(demo_client, tmp_path: Path) -> None:
    path = tmp_path / "real.mkv"
    spec = SampleVideoSpec(seconds=3.0, fps=5, size=(384, 256), codec="libx265")
    write_sample_video(path, seed=4, spec=spec)
    body = post_video(demo_client, path.read_bytes(), name="real.mkv").json()
    assert body["video"]["container"] == "matroska"
    assert body["verdict"] in ("real", "inconclusive")
    assert body["segments"] == []


def test_ordinary_420_video_is_out_of_distribution_for_the_demo(demo_client) -> None:
    """The demo model was trained on stills: it says it cannot judge 4:2:0 video frames
    rather than guessing."""
    body = post_video(demo_client, write_video(seconds=2.0, width=256, height=192)).json()
    assert body["verdict"] == "inconclusive"
    assert body["reasons"][0]["code"] == "too_many_inconclusive_frames"


def _nested_mov() -> bytes:
    # A MOV whose payload is another MOV (a container inside a container).
    inner = write_video(container="mov", seconds=0.5)
    return inner[:8] + inner


def _huge_metadata() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        out.metadata["comment"] = "x" * 500_000
        stream = out.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(
                __import__("numpy").full((64, 64, 3), i * 40, "uint8"), format="rgb24"
            )
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def _declared_dimensions(width: int, height: int) -> bytes:
    data = bytearray(write_video(seconds=0.5, width=64, height=64))
    # Patch the track header's width and height (16.16 fixed point) and the avc1 entry.
    tkhd = data.find(b"tkhd")
    end = tkhd + 4 + 84
    data[end - 8 : end - 4] = (width << 16).to_bytes(4, "big")
    data[end - 4 : end] = (height << 16).to_bytes(4, "big")
    avc1 = data.find(b"avc1")
    data[avc1 + 28 : avc1 + 30] = min(width, 65535).to_bytes(2, "big")
    data[avc1 + 30 : avc1 + 32] = min(height, 65535).to_bytes(2, "big")
    return bytes(data)


HOSTILE = {
    "zero_length": (b"", 400, "bad_request"),
    "jpeg_renamed_mp4": (jpeg_bytes(), 415, "unsupported_video_format"),
    "text": (b"hello, this is not a video at all" * 10, 415, "unsupported_video_format"),
    "ftyp_only": (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", 422, "invalid_video"),
    "ebml_only": (b"\x1a\x45\xdf\xa3" + b"\x00" * 64, 422, "invalid_video"),
    "audio_only": (write_audio_only(), 422, "invalid_video"),
    "mpeg4_codec": (write_video(codec="mpeg4", seconds=0.5), 415, "unsupported_video_format"),
    "mjpeg_in_mkv": (
        write_video(container="mkv", codec="mjpeg", seconds=0.5, pixel_format="yuvj420p"),
        415,
        "unsupported_video_format",
    ),
    "too_many_streams": (write_video(seconds=0.5, extra_video_streams=9), 413, "video_too_large"),
    "too_long": (write_video(seconds=40.0, width=32, height=32, fps=2), 413, "video_too_large"),
    "too_many_pixels": (_declared_dimensions(5000, 5000), None, None),
}


def _gif() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format="GIF")
    return buffer.getvalue()


_SMALL = write_video(seconds=1.0, width=64, height=64)
HOSTILE |= {
    "gif_renamed_mp4": (_gif(), 415, "unsupported_video_format"),
    "pdf": (b"%PDF-1.7\n" + b"\0" * 100, 415, "unsupported_video_format"),
    "random_after_ftyp": (
        b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40,
        422,
        "invalid_video",
    ),
    "random_after_ebml": (b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 40, 422, "invalid_video"),
}
# Files that are valid or merely odd: answered (200) or refused with a 4xx, never a 500.
ODD = {
    "declared_duration_huge": patch_box(_SMALL, b"mdhd", 20, 0xFFFFFFF0),
    "movie_duration_huge": patch_box(_SMALL, b"mvhd", 20, 0xFFFFFFF0),
    "fifty_million_samples_declared": patch_box(_SMALL, b"stts", 12, 50_000_000),
    "fifty_million_sizes_declared": patch_box(_SMALL, b"stsz", 16, 50_000_000),
    "audio_and_video": write_video(seconds=1.0, width=64, height=64, audio=True),
    "live_webm_without_duration": write_live_webm(),
    "tiny_frames": write_video(seconds=0.5, width=16, height=16),
    "ten_bit": write_video(
        seconds=0.5, codec="libx265", container="mkv", pixel_format="yuv420p10le"
    ),
    "odd_dimensions": write_video(seconds=0.5, width=66, height=62, pixel_format="yuv444p"),
}


@pytest.mark.parametrize("case", sorted(ODD))
def test_odd_videos_are_answered_or_refused_never_a_500(demo_client, case: str) -> None:
    response = post_video(demo_client, ODD[case])
    assert response.status_code in (200, 413, 415, 422), response.text
    if response.status_code != 200:
        assert set(response.json()) == {"error"}
    assert infer(demo_client, jpeg_bytes(256, 256)).status_code == 200


def test_a_single_frame_is_too_short_and_vfr_and_rotation_are_reported(demo_client) -> None:
    body = post_video(demo_client, write_video(timestamps=[0.0], width=256, height=192)).json()
    assert body["verdict"] == "inconclusive"
    assert [r["code"] for r in body["reasons"]] == ["too_short"]
    stamps = [0.0, 0.1, 0.15, 0.9, 1.0, 1.6, 1.7, 1.95]
    body = post_video(demo_client, write_video(timestamps=stamps), frames=8).json()
    assert all(min(abs(f["timestamp_s"] - s) for s in stamps) < 1e-6 for f in body["timeline"])
    body = post_video(demo_client, write_video(rotation=90, seconds=0.5), frames=2).json()
    assert body["video"]["rotation"] == 90


def test_a_file_too_costly_to_decode_is_refused(tiny_checkpoint) -> None:
    with serving(make_settings(tiny_checkpoint, video_decode_timeout_s=0.001)) as client:
        response = post_video(client, write_video(seconds=2.0))
        error = assert_error(response, 422, "video_decode_timeout")
        assert "took longer than" in error["message"]
        assert infer(client, jpeg_bytes()).status_code == 200


def test_a_client_that_disconnects_mid_video_upload_costs_nothing(demo_client) -> None:
    headers, body = multipart(write_video(seconds=2.0))
    response = call(demo_client, headers, half_then_disconnect(body), path="/infer/video")
    assert response.status == 499
    assert demo_client.app.state.model_service.admission.in_flight == 0
    assert infer(demo_client, jpeg_bytes(256, 256)).status_code == 200


@pytest.mark.parametrize(
    "params", [{"frames": 0}, {"every_s": -1}, {"frames": "many"}, {"aggregation": "median"}]
)
def test_invalid_sampling_parameters_are_422(demo_client, params) -> None:
    response = post_video(demo_client, write_video(seconds=0.5), **params)
    assert response.status_code == 422
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_videos_get_a_clear_4xx_and_the_service_keeps_serving(
    demo_client, case: str
) -> None:
    data, status, code = HOSTILE[case]
    response = post_video(demo_client, data)
    if status is None:
        # Patched headers: refused as too large, unreadable, or judged; never a 500.
        assert response.status_code in (200, 413, 415, 422), response.text
    else:
        assert_error(response, status, code)
    assert infer(demo_client, jpeg_bytes(256, 256)).status_code == 200


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_truncated_videos_never_fail_the_server(demo_client, manipulated_video, cut) -> None:
    data = manipulated_video[: int(len(manipulated_video) * cut)]
    response = post_video(demo_client, data)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert_error(response, 422, "invalid_video")


def test_nested_and_metadata_heavy_files(demo_client) -> None:
    for data in (_nested_mov(), _huge_metadata()):
        response = post_video(demo_client, data)
        assert response.status_code in (200, 413, 415, 422), response.text
        assert response.status_code != 500


def test_video_upload_limit_and_frame_limit(demo_client) -> None:
    big = b"\x00\x00\x00\x18ftypisom" + b"\0" * (9 * 1024 * 1024)
    assert_error(post_video(demo_client, big), 413, "payload_too_large")
    data = write_video(seconds=1.0)
    assert_error(post_video(demo_client, data, frames=500), 413, "video_too_large")


def test_video_slots_are_bounded(tiny_checkpoint) -> None:
    settings = make_settings(tiny_checkpoint, max_concurrent_videos=1)
    with serving(settings) as client:
        service = client.app.state.model_service
        service.admission.videos = 1  # as if one video were being analysed
        try:
            response = post_video(client, write_video(seconds=0.5))
        finally:
            service.admission.videos = 0
        assert_error(response, 503, "overloaded")
        assert "VERACITY_MAX_CONCURRENT_VIDEOS" in response.json()["error"]["message"]


def test_images_are_served_while_a_video_is_scored(tiny_checkpoint) -> None:
    """Image requests sent while a 32-frame video is scored are answered (the batcher's
    ordering is pinned in tests/unit/test_batcher.py); the video completes too."""
    settings = make_settings(tiny_checkpoint, max_batch_size=4)
    with serving(settings) as client:
        video = write_video(seconds=6.4, fps=10, width=64, height=64)
        results: dict[str, object] = {}

        def send_video() -> None:
            results["video"] = post_video(client, video, frames=32)

        thread = threading.Thread(target=send_video)
        thread.start()
        images = [infer(client, jpeg_bytes(64, 64, seed=i)) for i in range(6)]
        thread.join(timeout=60)
        assert all(r.status_code == 200 for r in images)
        video_response = results["video"]
        assert video_response.status_code == 200, video_response.text
        assert video_response.json()["frames_analysed"] == 32
        assert client.app.state.model_service.batch_share == 1  # an eighth of 4, at least 1
