"""A deterministic synthetic real/fake dataset, so the pipeline can be trained with no download.

"Real" images are synthetic scenes built the way a camera image is formed: smooth lighting,
textured surfaces, objects, optical blur, then sensor noise and one JPEG encode. "Fake"
images start as the same kind of scene and then carry traces that manipulated media shows:

- a region re-rendered by a generator: produced at half resolution and upsampled the way a
  transposed convolution does it, leaving a periodic checkerboard and no sensor noise;
- a spliced region taken from another scene, resampled and with a different noise level;
- a blending seam: a feathered boundary with a colour/brightness mismatch;
- double JPEG compression: a lower-quality encode before the final one.

Every fake carries the generator region with a seam (the face-swap pattern) and double
compression; half also carry a splice. The traces are what forensic detectors look for;
they demonstrate the pipeline and are not a substitute for real deepfake data.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SPLITS = ("train", "val")
CLASSES = ("real", "fake")

Rng = np.random.Generator


@dataclass(frozen=True)
class SampleDataSpec:
    """What to generate. ``sizes`` and ``jpeg_qualities``, when given, vary within the set.

    Each image draws its side from ``sizes`` (or is ``image_size`` when ``sizes`` is empty)
    and its final encoding from ``jpeg_qualities`` (``None``: stored losslessly as PNG, so
    the JPEG history the generator baked in is exactly what is stored; a number: the
    image is re-encoded once more as a JPEG of that quality and stored as ``.jpg``, as a
    platform that recompresses uploads would). Both draws come from the image's own random
    stream, so a file does not depend on how many others are generated.
    """

    train_per_class: int = 200
    val_per_class: int = 100
    image_size: int = 256
    sizes: tuple[int, ...] = ()
    jpeg_qualities: tuple[int | None, ...] = (None,)

    def __post_init__(self) -> None:
        if self.train_per_class < 0 or self.val_per_class < 0:
            raise ValueError("image counts must be >= 0")
        if any(side < 16 for side in (self.image_size, *self.sizes)):
            raise ValueError("image sides must be at least 16 px")
        if not self.jpeg_qualities:
            raise ValueError("jpeg_qualities needs at least one entry (None for PNG)")
        if any(q is not None and not 1 <= q <= 100 for q in self.jpeg_qualities):
            raise ValueError("JPEG qualities must be between 1 and 100")


def _gradient(rng: Rng, size: int) -> np.ndarray:
    """Smooth lighting: a linear or radial blend between two colours."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.5) / 3.0
    else:
        cx, cy = rng.uniform(0.2, 0.8, 2)
        t = np.clip(np.hypot(xx - cx, yy - cy) * rng.uniform(0.8, 1.6), 0, 1)
    blend: np.ndarray = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    return blend.astype(np.float32)


def _texture(rng: Rng, size: int) -> np.ndarray:
    """Fractal value noise: a few octaves of random grids, smoothly upsampled."""
    out = np.zeros((size, size), dtype=np.float32)
    amplitude = 1.0
    for cells in (4, 8, 16, 32):
        grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        layer = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
        out += amplitude * np.asarray(layer, dtype=np.float32)
        amplitude *= rng.uniform(0.4, 0.6)
    return out


def _shapes(rng: Rng, canvas: Image.Image) -> None:
    draw = ImageDraw.Draw(canvas)
    size = canvas.size[0]
    for _ in range(int(rng.integers(3, 9))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.1, 0.9, 2) * size
        w, h = rng.uniform(0.08, 0.45, 2) * size
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            points = [
                (float(x0 + rng.uniform(0, w)), float(y0 + rng.uniform(0, h))) for _ in range(5)
            ]
            draw.polygon(points, fill=colour)


def _scene(rng: Rng, size: int) -> np.ndarray:
    """A noise-free scene as float32 HxWx3 in [0, 255]: lighting, texture, objects, optics."""
    base = _gradient(rng, size)
    base += _texture(rng, size)[..., None] * rng.uniform(10, 35) * rng.uniform(0.6, 1.0, 3)
    canvas = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), mode="RGB")
    _shapes(rng, canvas)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.4))))
    return np.asarray(canvas, dtype=np.float32)


def _sensor_noise(rng: Rng, image: np.ndarray, sigma: float) -> np.ndarray:
    # Shot noise grows with brightness; read noise is constant.
    scale = sigma * np.sqrt(0.3 + image / 255.0)
    return image + rng.normal(0.0, 1.0, image.shape).astype(np.float32) * scale


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8), mode="RGB").save(
        buffer, format="JPEG", quality=quality
    )
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32)


def _region_mask(rng: Rng, size: int, feather: float) -> np.ndarray:
    """A soft elliptical mask near the centre (where the eval centre crop looks)."""
    mask = Image.new("L", (size, size), 0)
    w, h = rng.uniform(0.35, 0.65, 2) * size
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    ImageDraw.Draw(mask).ellipse((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), fill=255)
    if feather > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(radius=feather))
    return np.asarray(mask, dtype=np.float32)[..., None] / 255.0


# The fingerprint of one generator: two stride-2 transposed convolutions leave a fixed 4x4
# pattern of per-phase offsets (the "checkerboard" of generator decoders, at period 4).
_GRID_KERNEL = np.array([1.0, -0.6, 0.4, -0.8])
_GENERATOR_GRID = np.outer(_GRID_KERNEL, _GRID_KERNEL[::-1]) + 0.5 * np.outer(
    _GRID_KERNEL[::-1], _GRID_KERNEL
)


def _generator_upsample(rng: Rng, image: np.ndarray) -> np.ndarray:
    """Quarter-resolution content upsampled the way a generator's decoder does it.

    Smooth, noise-free content (decoders do not reproduce sensor noise) carrying the
    periodic grid fingerprint of stride-2 transposed convolutions.
    """
    size = image.shape[0]
    small = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="RGB").resize(
        (max(1, size // 4), max(1, size // 4)), Image.Resampling.BILINEAR
    )
    up = np.asarray(small.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    # Offsets in grey levels, so the fingerprint is as visible in dark regions as in bright
    # ones; faint next to sensor noise, as in real generator output.
    grid = rng.uniform(2.0, 4.0) * _GENERATOR_GRID / np.abs(_GENERATOR_GRID).max()
    tiled = np.tile(grid, (size // 4 + 1, size // 4 + 1))[:size, :size, None]
    return up + tiled.astype(np.float32)


def _splice(rng: Rng, image: np.ndarray, size: int) -> np.ndarray:
    """Paste a resampled patch of another scene with a different noise level."""
    donor = _scene(rng, size)
    factor = rng.uniform(0.5, 0.8)
    small = int(size * factor)
    resampled = (
        Image.fromarray(np.clip(donor, 0, 255).astype(np.uint8), mode="RGB")
        .resize((small, small), Image.Resampling.BILINEAR)
        .resize((size, size), Image.Resampling.BILINEAR)
    )
    patch = _sensor_noise(rng, np.asarray(resampled, dtype=np.float32), rng.uniform(0.0, 1.0))
    mask = _region_mask(rng, size, feather=float(rng.uniform(0.0, 2.0)))
    spliced: np.ndarray = image * (1 - mask) + patch * mask
    return spliced


# Public names for what the sample videos (veracity.video.samples) share with the images.
scene = _scene
sensor_noise = _sensor_noise
jpeg_roundtrip = _jpeg


def generator_region(rng: Rng, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A generator-rendered, colour-shifted version of ``clean`` and the feathered mask
    that blends it in: the face-swap pattern of ``make_fake``."""
    generated = _generator_upsample(rng, clean)
    generated = generated * rng.uniform(0.8, 1.2, 3)[None, None, :] + rng.uniform(-15, 15)
    mask = _region_mask(rng, clean.shape[0], feather=float(rng.uniform(2.0, 6.0)))
    return generated, mask


def make_real(rng: Rng, size: int) -> np.ndarray:
    image = _sensor_noise(rng, _scene(rng, size), rng.uniform(5.0, 9.0))
    return _jpeg(image, int(rng.integers(80, 96)))


def make_fake(rng: Rng, size: int) -> np.ndarray:
    clean = _scene(rng, size)
    image = _sensor_noise(rng, clean, rng.uniform(5.0, 9.0))
    generated = _generator_upsample(rng, clean)
    # Blending seam: the generated region is colour-shifted and feathered into the frame.
    generated = generated * rng.uniform(0.8, 1.2, 3)[None, None, :] + rng.uniform(-15, 15)
    mask = _region_mask(rng, size, feather=float(rng.uniform(2.0, 6.0)))
    image = image * (1 - mask) + generated * mask
    if rng.random() < 0.5:
        image = _splice(rng, image, size)
    # Manipulated media is decoded, edited and re-encoded: the first, lower-quality encode
    # leaves an 8x8 block grid that the final high-quality encode does not remove.
    image = _jpeg(image, int(rng.integers(30, 61)))
    return _jpeg(image, int(rng.integers(80, 96)))


_MAKERS: dict[str, Callable[[Rng, int], np.ndarray]] = {"real": make_real, "fake": make_fake}


def generate_sample_data(out: Path, *, seed: int, spec: SampleDataSpec | None = None) -> int:
    """Write ``out/{train,val}/{real,fake}/*.png`` deterministically from ``seed``.

    Images are stored losslessly (PNG) so the JPEG history baked into the pixels is exactly
    what the generator decided, not a further encode. Returns the number of images written.
    """
    spec = spec or SampleDataSpec()
    counts = {"train": spec.train_per_class, "val": spec.val_per_class}
    written = 0
    for split_index, split in enumerate(SPLITS):
        for class_index, label in enumerate(CLASSES):
            folder = out / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(counts[split]):
                # One independent stream per image: the same seed gives the same file
                # whatever the other counts are.
                rng = np.random.default_rng([seed, split_index, class_index, i])
                # Drawn from a separate stream so that adding sizes or qualities to a spec
                # leaves the images of an existing single-size spec unchanged.
                choice = np.random.default_rng([seed, split_index, class_index, i, 1])
                size = int(choice.choice(spec.sizes)) if spec.sizes else spec.image_size
                quality = spec.jpeg_qualities[int(choice.integers(len(spec.jpeg_qualities)))]
                pixels = _MAKERS[label](rng, size)
                image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
                if quality is None:
                    image.save(folder / f"{label}_{i:04d}.png", format="PNG", compress_level=1)
                else:
                    image.save(folder / f"{label}_{i:04d}.jpg", format="JPEG", quality=quality)
                written += 1
    return written
