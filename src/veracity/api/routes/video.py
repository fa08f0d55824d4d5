"""POST /infer/video: a video, its sampled frames judged and aggregated."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from veracity.answers import VideoResponse
from veracity.api.deps import (
    CredentialsDep,
    ModelChoiceDep,
    RecorderDep,
    RouteOptionsDep,
    SignerDep,
)
from veracity.api.openapi import VIDEO_ERRORS, upload_schema
from veracity.api.uploads import UploadDep
from veracity.serving.judging import finished, judge_video
from veracity.video.aggregate import AggregationMethod
from veracity.video.plan import SamplingPlan

router = APIRouter()


@router.post(
    "/infer/video",
    response_model=VideoResponse,
    summary="Judge a video: a verdict, a timeline of sampled frames, suspicious segments",
    description="Samples frames (evenly spaced, or one every `every_s` seconds), judges "
    "each like an image, and aggregates them (default: the DFDC-winning 'confident' "
    "rule); a sustained run of fake frames (VERACITY_VIDEO_RUN_MIN_FRAMES over "
    "VERACITY_VIDEO_RUN_MIN_DURATION_S) makes the video fake and is the first segment; so "
    "does a stretch of one shot whose every frame scores well above the rest of that shot "
    "(temporal contrast, VERACITY_VIDEO_CONTRAST_MIN_STEP: reason `temporal_contrast`, the "
    "segment's `step`). "
    "MP4, MOV, WebM or MKV with H.264, HEVC, VP8, VP9 or AV1, up to "
    "VERACITY_VIDEO_MAX_DURATION_S. The file's C2PA content credentials (MP4 and MOV) are "
    "read beside it, as for /infer (`provenance`, `model_verdict`). See the README's "
    "'Video' and 'Provenance'.",
    responses=VIDEO_ERRORS,
    openapi_extra=upload_schema("file", "The video: MP4, MOV, WebM or MKV.", many=False),
)
async def infer_video(
    upload: UploadDep,
    recorder: RecorderDep,
    signer: SignerDep,
    choice: ModelChoiceDep,
    options: RouteOptionsDep,
    credentials: CredentialsDep,
    frames: int | None = Query(
        default=None,
        ge=1,
        le=1024,
        description="Evenly spaced frames to analyse (default VERACITY_VIDEO_FRAMES).",
    ),
    every_s: float | None = Query(
        default=None,
        gt=0,
        le=3600,
        description="Analyse one frame every this many seconds instead of `frames`.",
    ),
    aggregation: Annotated[
        AggregationMethod | None,
        Query(
            description="confident (default), mean, max or top_k: how frame "
            "probabilities become the video's."
        ),
    ] = None,
) -> VideoResponse:
    data = await upload.admitted_file()
    answer, row = await judge_video(
        upload.service,
        recorder,
        upload.context(choice.model, choice.version),
        data,
        plan=SamplingPlan(count=frames or options.video_frames, every_s=every_s),
        rule=options.video_rule.with_method(aggregation),
        credentials=credentials,
    )
    return finished(answer, row, await recorder.save([row], [data]), signer)
