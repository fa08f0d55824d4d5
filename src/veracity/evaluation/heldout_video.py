"""The held-out video arm: web video of a real scene, and the same clip edited only between
two timestamps, judged as the service judges an upload (issue 21, Goals: video).

The held-out sources are stills, so a clip is made from one the way training makes its web
clips (``edits.webvideo``): a slow pan and zoom over the photograph, at most 1280x720,
encoded as H.264 (CRF 23) and as VP9 (CRF 34), 4:2:0, 12 s at 8 frames a second by
default. For each photograph chosen, per codec:

- a ``real`` clip: the photograph alone;
- an ``edited`` clip: the same motion, but the frames shown from ``edit[0]`` to ``edit[1]``
  seconds (4 s to 8 s) are of an edited copy of the photograph, the edit's mask moved with
  them; the frames before and after are the real clip's. The edit is the image arm's of
  that kind (``heldout.edit_generator``, the same working size and donor), one kind per
  photograph.

Each clip goes through ``video.analysis.analyse_video`` (the service's ``VideoReader``
sampling, the predictor, ``judge_video`` with its sustained-run rule and temporal contrast)
with the service's defaults: 32 evenly spaced frames, the ``confident`` method, a run of 3
fake frames over 1 s, a contrast step of 1.0 logits. An edited clip's top segment
(``segments[0]``) is compared with the edited interval (``localisation.interval_overlap``).

Which photographs: ``videos`` of them, taken from each source in turn (in the list's order
within a source), so every source appears before any appears twice; the edit kinds are
dealt in the same order, so six photographs cover the six kinds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from veracity.corpus.heldout import HeldOutPhoto
from veracity.edits import DEFAULT_AREA, EDIT_KINDS, make_fake
from veracity.edits.regions import Image, Mask
from veracity.edits.webvideo import (
    WebVideoOptions,
    WebVideoParams,
    draw_web_video,
    encode_clip,
    switch_motion,
)
from veracity.errors import InvalidImageError, VeracityError
from veracity.evaluation.heldout import PHOTO_KINDS, edit_generator, working_image
from veracity.evaluation.localisation import interval_overlap
from veracity.inference.predictor import Predictor
from veracity.video.aggregate import AggregationRule
from veracity.video.analysis import VideoAnalysis, analyse_video
from veracity.video.plan import SamplingPlan, VideoLimits

# The issue's "ordinary web video": H.264 at CRF 23 (libx264's default) and VP9 at CRF 34,
# both in the middle of the ranges training draws from (20-28 and 30-38).
WEB_CRF: dict[str, int] = {"h264": 23, "vp9": 34}


@dataclass(frozen=True)
class HeldOutVideoOptions:
    """How the held-out clips are made and judged. ``videos``: photographs (each gives a
    real and an edited clip per codec; 0: no video arm). ``max_side``, ``kinds``, ``area``
    and ``seed`` are the image arm's, so an edited clip shows that arm's edit. ``plan``
    and ``rule`` default to the service's (``Settings``' defaults: 32 frames, the
    ``confident`` method, the sustained-run rule); a clip fits ``limits`` by far."""

    videos: int = 2
    codecs: tuple[str, ...] = ("h264", "vp9")
    seconds: float = 12.0
    fps: int = 8
    edit: tuple[float, float] = (4.0, 8.0)
    max_size: tuple[int, int] = (1280, 720)
    max_side: int = 1920
    kinds: tuple[str, ...] = PHOTO_KINDS
    area: tuple[float, float] = DEFAULT_AREA
    seed: int = 0
    plan: SamplingPlan = field(default_factory=SamplingPlan)
    rule: AggregationRule = field(default_factory=AggregationRule)
    limits: VideoLimits = field(default_factory=VideoLimits)

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in PHOTO_KINDS]
        if not self.kinds or unknown:
            raise ValueError(f"kinds must be a non-empty subset of {', '.join(PHOTO_KINDS)}")
        if not self.codecs or any(c not in WEB_CRF for c in self.codecs):
            raise ValueError(f"codecs must be a non-empty subset of {', '.join(WEB_CRF)}")
        if self.videos < 0:
            raise ValueError(f"videos must be at least 0, got {self.videos}")
        if self.fps < 1 or self.seconds * self.fps < 2:
            raise ValueError("a clip needs at least 2 frames and 1 frame a second")
        if not 0 <= self.edit[0] < self.edit[1] <= self.seconds:
            raise ValueError(f"edit must lie within the clip's {self.seconds:g} s: {self.edit}")
        if not self.edited_frames:
            raise ValueError(f"no frame is shown between {self.edit[0]:g} s and {self.edit[1]:g} s")

    @property
    def frames(self) -> int:
        return round(self.seconds * self.fps)

    @property
    def edited_frames(self) -> range:
        """The frames shown in ``edit``: frame i is on screen from i / fps to (i + 1) / fps,
        so these are the frames that start in [edit[0], edit[1])."""
        start, end = (math.ceil(round(t * self.fps, 6)) for t in self.edit)
        return range(start, min(end, self.frames))

    @property
    def edit_interval(self) -> tuple[float, float]:
        """The time the edited frames are on screen (``edit``, on the frame grid)."""
        frames = self.edited_frames
        return frames.start / self.fps, frames.stop / self.fps


@dataclass(frozen=True)
class HeldOutClip:
    """One judged clip. ``kind`` is None for a real clip. ``verdict`` is ``error`` when the
    clip could not be made or read (``error`` says why). ``frames``: (timestamp, fake_prob)
    of each sampled frame; ``frame_reasons``: their reasons counted (why frames were left
    out of the aggregate, or near the threshold). ``top_segment``: the verdict's first
    segment, if any; for an edited clip, ``overlaps`` and ``iou`` compare it with
    ``edit_interval`` (None without a segment), and ``edited_share`` is the mean share of
    an edited frame the edit covers."""

    source: str
    photo: str
    codec: str
    crf: int
    kind: str | None
    label: str
    verdict: str
    width: int = 0
    height: int = 0
    duration_s: float = 0.0
    encoded_bytes: int = 0
    reasons: list[str] = field(default_factory=list)
    fake_prob: float | None = None
    frames_analysed: int = 0
    frames_used: int = 0
    frames: list[tuple[float, float]] = field(default_factory=list)
    frame_reasons: dict[str, int] = field(default_factory=dict)
    edit_interval: tuple[float, float] | None = None
    edited_share: float | None = None
    top_segment: tuple[float, float] | None = None
    top_sustained: bool | None = None
    overlaps: bool | None = None
    iou: float | None = None
    judge_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Clip:
    codec: str
    kind: str | None
    data: bytes
    params: WebVideoParams
    edited_share: float | None = None


def choose_photos(photos: Sequence[HeldOutPhoto], count: int) -> list[HeldOutPhoto]:
    """``count`` photographs, one from each source in turn (sources in order of first
    appearance, photographs in the list's order within a source)."""
    queues: dict[str, list[HeldOutPhoto]] = {}
    for photo in photos:
        queues.setdefault(photo.source, []).append(photo)
    chosen: list[HeldOutPhoto] = []
    while len(chosen) < count and any(queues.values()):
        for queue in queues.values():
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def judge_heldout_videos(
    predictor: Predictor,
    photos: Sequence[HeldOutPhoto],
    root: Path,
    options: HeldOutVideoOptions = HeldOutVideoOptions(),
    *,
    donors: Sequence[HeldOutPhoto] | None = None,
    progress: bool = True,
) -> list[HeldOutClip]:
    """Make and judge the clips of ``options.videos`` photographs of ``photos`` (under
    ``root``). A splice's donor is the photograph after it in ``donors`` (default:
    ``photos``), as in the image arm. A photograph that cannot be read or edited yields
    ``error`` clips instead of ending the run.

    Raises:
        ValueError: A photograph is not among ``donors``.
    """
    pool = list(donors or photos)
    where = {photo.entry.local_path: index for index, photo in enumerate(pool)}
    chosen = choose_photos(photos, options.videos)
    clips: list[HeldOutClip] = []
    total = len(chosen) * 2 * len(options.codecs)
    with tqdm(total=total, desc="held-out video", unit="clip", disable=not progress) as bar:
        for number, photo in enumerate(chosen):
            if photo.entry.local_path not in where:
                raise ValueError(f"{photo.entry.local_path} is not among the donors")
            donor = pool[(where[photo.entry.local_path] + 1) % len(pool)]
            # Dealt in turn, so the first photographs chosen cover as many kinds as they can.
            kind = options.kinds[number % len(options.kinds)]
            try:
                made = list(_clips(photo, donor, kind, root, options))
            except (InvalidImageError, OSError, ValueError) as e:
                # Each of its clips still counts, as an error.
                message = getattr(e, "message", None) or str(e)
                for codec in options.codecs:
                    clips += [_failed(photo, codec, k, message) for k in (None, kind)]
                bar.update(2 * len(options.codecs))
                continue
            for clip in made:
                clips.append(_judge(predictor, photo, clip, options))
                bar.update(1)
    return clips


def _clips(
    photo: HeldOutPhoto, donor: HeldOutPhoto, kind: str, root: Path, options: HeldOutVideoOptions
) -> Iterator[_Clip]:
    path = photo.entry.local_path
    image = working_image(root / path, options.max_side)
    donor_image = None
    if EDIT_KINDS[kind].needs_donor:
        donor_image = working_image(root / donor.entry.local_path, options.max_side)
    edit = make_fake(
        image, edit_generator(options.seed, path, kind), kind, donor_image, area=options.area
    )
    # One motion per photograph, so its clips differ only by codec and by the edit.
    motion = draw_web_video(
        edit_generator(options.seed, path, "web_video"),
        image.shape[0],
        image.shape[1],
        WebVideoOptions(
            codecs=options.codecs[:1],
            frames=options.frames,
            fps=options.fps,
            max_size=options.max_size,
        ),
    )
    for codec in options.codecs:
        params = replace(motion, codec=codec, crf=WEB_CRF[codec])
        # The real clip is the edited one with no frame edited: the same frames elsewhere.
        real = switch_motion(image, edit.image, edit.mask, params, range(0))
        yield _Clip(codec, None, encode_clip((frame for frame, _ in real), params), params)
        shares: list[float] = []
        edited = switch_motion(image, edit.image, edit.mask, params, options.edited_frames)
        data = encode_clip(_noting_shares(edited, options.edited_frames, shares), params)
        yield _Clip(codec, kind, data, params, round(float(np.mean(shares)), 5))


def _noting_shares(
    frames: Iterator[tuple[Image, Mask]], edited: range, shares: list[float]
) -> Iterator[Image]:
    """The frames, noting the share of each edited one that its mask covers."""
    for index, (frame, mask) in enumerate(frames):
        if index in edited:
            shares.append(float(mask.mean()))
        yield frame


def _judge(
    predictor: Predictor, photo: HeldOutPhoto, clip: _Clip, options: HeldOutVideoOptions
) -> HeldOutClip:
    try:
        analysis = analyse_video(
            predictor, clip.data, plan=options.plan, rule=options.rule, limits=options.limits
        )
    except VeracityError as e:
        return _failed(photo, clip.codec, clip.kind, e.message)
    interval = None if clip.kind is None else options.edit_interval
    item = HeldOutClip(
        source=photo.source,
        photo=photo.entry.local_path,
        codec=clip.codec,
        crf=clip.params.crf,
        kind=clip.kind,
        label="real" if clip.kind is None else "fake",
        verdict=analysis.verdict.verdict,
        width=clip.params.width,
        height=clip.params.height,
        duration_s=analysis.info.duration_s,
        encoded_bytes=len(clip.data),
        reasons=[r.code for r in analysis.verdict.reasons],
        fake_prob=analysis.verdict.fake_prob,
        frames_analysed=analysis.verdict.frames_analysed,
        frames_used=analysis.verdict.frames_used,
        frames=[(f.timestamp_s, round(f.verdict.fake_prob, 6)) for f in analysis.frames],
        frame_reasons=dict(
            sorted(Counter(r.code for f in analysis.frames for r in f.verdict.reasons).items())
        ),
        edit_interval=interval,
        edited_share=clip.edited_share,
        judge_ms=analysis.total_ms,
    )
    return _with_top_segment(item, analysis)


def _with_top_segment(item: HeldOutClip, analysis: VideoAnalysis) -> HeldOutClip:
    if not analysis.verdict.segments:
        return item
    top = analysis.verdict.segments[0]
    item = replace(item, top_segment=(top.start_s, top.end_s), top_sustained=top.sustained)
    if item.edit_interval is None:
        return item
    overlaps, iou = interval_overlap((top.start_s, top.end_s), item.edit_interval)
    return replace(item, overlaps=overlaps, iou=round(iou, 4))


def _failed(photo: HeldOutPhoto, codec: str, kind: str | None, message: str) -> HeldOutClip:
    return HeldOutClip(
        source=photo.source,
        photo=photo.entry.local_path,
        codec=codec,
        crf=WEB_CRF[codec],
        kind=kind,
        label="real" if kind is None else "fake",
        verdict="error",
        error=message,
    )
