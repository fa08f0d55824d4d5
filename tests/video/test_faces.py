"""Face checkpoints: a face is found and cropped with its margin; no face -> no_face."""

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data

from tests.api.conftest import API_KEY, infer, make_settings, serving
from tests.conftest import CLASS_NAMES, TINY_ARCH, TINY_SIZE
from tests.facemodel import requires_face_model
from veracity.checkpoint import save_checkpoint
from veracity.cli import main
from veracity.faces import FaceBox, FaceDetector, crop_face
from veracity.models import create_classifier, resolve_preprocess_config

HEADERS = {"X-API-Key": API_KEY}


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut()).convert("RGB")


def coffee() -> Image.Image:
    return Image.fromarray(data.coffee()).convert("RGB")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def video_of(image: Image.Image, frames: int = 6) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height = image.size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def face_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_classifier(TINY_ARCH)
    preprocess = dataclasses.replace(
        resolve_preprocess_config(model, image_size=TINY_SIZE), face_crop=True
    )
    path = tmp_path_factory.mktemp("faces") / "faces.safetensors"
    save_checkpoint(
        path,
        model,
        architecture=TINY_ARCH,
        class_names=CLASS_NAMES,
        preprocess=preprocess,
        model_name="tiny-faces",
        model_version="0.0.1",
        metrics={},
    )
    return path


@pytest.fixture(scope="module")
def face_client(face_checkpoint: Path) -> Iterator[TestClient]:
    with serving(make_settings(face_checkpoint)) as client:
        yield client


@requires_face_model
def test_the_detector_finds_the_face_and_nothing_in_a_still_life() -> None:
    (box,) = FaceDetector().detect(astronaut())
    # The astronaut's face is about 180-270 px across and 70-160 px down.
    assert 150 < box.left < 200
    assert 250 < box.right < 300
    assert 40 < box.top < 100
    assert 140 < box.bottom < 190
    assert FaceDetector().detect(coffee()) == []


def test_crops_add_a_third_on_each_side_clipped_to_the_image() -> None:
    image = Image.new("RGB", (300, 200))
    crop = crop_face(image, FaceBox(left=90, top=60, right=150, bottom=120), margin=1 / 3)
    assert crop.size == (100, 100)  # 60 + 2 x 20
    edge = crop_face(image, FaceBox(left=0, top=0, right=60, bottom=60), margin=1 / 3)
    assert edge.size == (80, 80)  # clipped at the left and top


@requires_face_model
def test_a_face_is_judged_and_no_face_is_inconclusive(face_client) -> None:
    body = infer(face_client, png(astronaut())).json()
    assert body["faces"] == 1
    assert body["batch_size"] >= 1
    assert "no_face" not in [r["code"] for r in body["reasons"]]
    body = infer(face_client, png(coffee())).json()
    assert body["faces"] == 0
    assert body["verdict"] == "inconclusive"
    assert [r["code"] for r in body["reasons"]] == ["no_face"]
    assert body["fake_prob"] == body["real_prob"] == 0.5
    assert body["batch_size"] == 0


def test_whole_image_checkpoints_report_no_face_count(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint)) as client:
        assert infer(client, png(coffee())).json()["faces"] is None


@requires_face_model
def test_videos_judge_faces_per_frame(face_client) -> None:
    def post(name: str, video: bytes) -> dict:
        files = {"file": (name, video, "video/mp4")}
        params = {"frames": 4}
        return face_client.post("/infer/video", files=files, headers=HEADERS, params=params).json()

    body = post("a.mp4", video_of(astronaut()))
    assert [f["faces"] for f in body["timeline"]] == [1, 1, 1, 1]
    body = post("c.mp4", video_of(coffee()))
    assert body["verdict"] == "inconclusive"
    assert [r["code"] for r in body["reasons"]] == ["no_face"]


@requires_face_model
def test_extract_frames_can_build_a_face_crop_data_set(tmp_path: Path, capsys) -> None:
    video = tmp_path / "astronaut.mp4"
    video.write_bytes(video_of(astronaut(), frames=4))
    out = tmp_path / "faces"
    args = ["extract-frames", str(video), "--out", str(out), "--count", "2", "--faces"]
    assert main([*args, "--no-progress"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    crops = [r["file"] for r in records[:-1]]
    assert len(crops) == 2
    assert all(c.endswith("_face0.png") for c in crops)
    with Image.open(crops[0]) as crop:
        width, height = crop.size
        assert np.asarray(crop).std() > 10
    # CenterFace's box runs from the hairline to the chin (about 90 x 120 px), plus a third.
    assert 120 < width < 170
    assert 170 < height < 230


@requires_face_model
def test_evaluation_counts_faceless_images_as_no_face(face_checkpoint: Path, tmp_path) -> None:
    from veracity.checkpoint import load_checkpoint
    from veracity.evaluation.report import evaluate_items
    from veracity.inference.predictor import Predictor

    predictor = Predictor(load_checkpoint(face_checkpoint), torch.device("cpu"))
    files = []
    for name, image in (("face.png", astronaut()), ("still.png", coffee())):
        image.save(tmp_path / name)
        files.append((tmp_path / name, "real"))
    face, still = evaluate_items(predictor, files, progress=False)
    assert "no_face" not in face.reasons
    assert still.reasons == ["no_face"]
    assert still.verdict == "inconclusive"


def test_a_face_checkpoint_without_the_detector_model_fails_to_load(
    face_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import veracity.faces
    from veracity.checkpoint import load_checkpoint
    from veracity.errors import ConfigurationError
    from veracity.inference.predictor import Predictor

    monkeypatch.setattr(veracity.faces, "default_model_path", lambda: tmp_path / "absent.onnx")
    # At load, with the command to run, rather than as a 500 on every request.
    with pytest.raises(ConfigurationError, match="veracity fetch-face-detector"):
        Predictor(load_checkpoint(face_checkpoint), torch.device("cpu"))
