"""Stored predictions: read one, list them, add a reviewer's label, erase one.

A key sees only the predictions its own requests created; a key with the admin scope sees
all. Another key's prediction answers 404 exactly like a missing one, so IDs cannot be
probed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from veracity.api.deps import CallerDep, RecorderDep, StoreDep
from veracity.api.openapi import NO_EXPLANATION, STORE_ERRORS, only
from veracity.errors import BadRequestError, ForbiddenError, NoExplanationError
from veracity.overlay import overlay_png
from veracity.store.predictions import PredictionFilter, StoredPrediction

MAX_NOTE_CHARS = 2000
MAX_PAGE = 100
# The service's IDs are 32 hex characters (a job's item adds "-<index>"); predictions stored
# before they were (schema revision 0005) keep their request ID, at most 64 safe characters
# (a batch item's with "-<index>").
PredictionId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=80,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The prediction_id of an answer.",
    ),
]


class ReviewModel(BaseModel):
    label: Literal["real", "fake"] = Field(description="The reviewer's ground truth.")
    note: str | None
    reviewer_key_id: str | None = Field(description="The ID of the key that reviewed.")
    created_at: datetime


class PredictionModel(BaseModel):
    """A stored verdict, with the latest reviewer label beside the model's answer."""

    model_config = ConfigDict(protected_namespaces=())

    prediction_id: str
    request_id: str = Field(
        description="The request that made it (the client's X-Request-ID, or the one the "
        "service gave): shared by a batch's items and by retries with the same ID."
    )
    created_at: datetime
    key_id: str | None = Field(description="The ID of the key whose request made it.")
    kind: Literal["image", "video", "batch_item", "shadow"]
    input_sha256: str
    media_type: str
    size_bytes: int
    model_name: str
    model_version: str
    weights_sha256: str
    calibration_version: str | None
    verdict: Literal["real", "fake", "inconclusive"]
    fake_prob: float | None
    real_prob: float | None
    reasons: list[str] = Field(description="Reason codes of the verdict.")
    cached_from: str | None = Field(
        description="Set when this answer was repeated from an earlier stored one."
    )
    shadow_of: str | None = Field(
        default=None,
        description="Set on a shadow score: the prediction (answered by the serving version) "
        "whose input the shadow version scored too.",
    )
    review: ReviewModel | None = Field(description="The latest reviewer feedback, if any.")
    reviews: int = Field(description="Feedback entries given so far.")
    result: dict[str, Any] = Field(
        description="The answer as it was sent (a video's timeline and segments included)."
    )

    @classmethod
    def build(cls, stored: StoredPrediction) -> PredictionModel:
        row = stored.row
        review = stored.review
        return cls(
            prediction_id=row.id,
            request_id=row.request_id,
            created_at=row.created_at,
            key_id=row.key_id,
            kind=row.kind,  # type: ignore[arg-type]
            input_sha256=row.input_sha256,
            media_type=row.media_type,
            size_bytes=row.size_bytes,
            model_name=row.model_name,
            model_version=row.model_version,
            weights_sha256=row.weights_sha256,
            calibration_version=row.calibration_version,
            verdict=row.verdict,  # type: ignore[arg-type]
            fake_prob=row.fake_prob,
            real_prob=row.real_prob,
            reasons=list(row.reasons),
            cached_from=row.cached_from,
            shadow_of=row.shadow_of,
            review=None
            if review is None
            else ReviewModel(
                label=review.label,
                note=review.note,
                reviewer_key_id=review.reviewer_key_id,
                created_at=review.created_at,
            ),
            reviews=stored.reviews,
            result=row.response,
        )


class PredictionPage(BaseModel):
    items: list[PredictionModel]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Literal["real", "fake"] = Field(description="What the reviewer found the media to be.")
    note: Annotated[str, StringConstraints(max_length=MAX_NOTE_CHARS)] | None = Field(
        default=None, description=f"Free text, at most {MAX_NOTE_CHARS} characters."
    )


router = APIRouter(prefix="/predictions", tags=["predictions"])
RESPONSES = only(STORE_ERRORS, 400, 401, 404, 429, 503)


@router.get(
    "/{prediction_id}",
    response_model=PredictionModel,
    summary="One stored prediction, with its reviewer feedback",
    responses=RESPONSES,
)
async def get_prediction(
    prediction_id: PredictionId, caller: CallerDep, store: StoreDep
) -> PredictionModel:
    return PredictionModel.build(await store.get(prediction_id, caller))


@router.get(
    "/{prediction_id}/explanation.png",
    response_class=Response,
    summary="The prediction's explanation grid drawn as a transparent PNG overlay",
    description="A transparent PNG at the image's width x height (`quality.width`, "
    "`quality.height`; indexed, its palette carrying alpha, which decoders read as RGBA), "
    "each grid cell a rectangle coloured from blue (real) through pale yellow to red "
    "(fake), fainter near 0.5: lay it over your copy of the image (the service never "
    "draws on the upload itself). "
    "Only for predictions answered with `?explain=true` by a checkpoint that has a grid.",
    responses={
        200: {"content": {"image/png": {}}, "description": "The overlay."},
        **(RESPONSES | NO_EXPLANATION),
    },
)
async def get_explanation_png(
    prediction_id: PredictionId, caller: CallerDep, store: StoreDep
) -> Response:
    stored = await store.get(prediction_id, caller)
    answer = stored.row.response
    explanation = answer.get("explanation") or {}
    grid = explanation.get("grid")
    quality = answer.get("quality") or {}
    if not grid or "width" not in quality or "height" not in quality:
        raise NoExplanationError(
            f"prediction {prediction_id!r} has no explanation grid: ask POST /infer with "
            "explain=true (checkpoints that read one resized crop or face crops have none; "
            "see explanation.reason)"
        )
    png = await asyncio.to_thread(overlay_png, grid, quality["width"], quality["height"])
    return Response(content=png, media_type="image/png")


@router.get(
    "",
    response_model=PredictionPage,
    summary="Stored predictions, newest (or oldest) first, filtered and paginated by cursor",
    responses=RESPONSES | only(STORE_ERRORS, 403),
)
async def list_predictions(
    caller: CallerDep,
    store: StoreDep,
    since: Annotated[
        datetime | None, Query(description="Created at or after (ISO 8601, with zone).")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Created before (ISO 8601, with zone).")
    ] = None,
    verdict: Annotated[Literal["real", "fake", "inconclusive"] | None, Query()] = None,
    model_version: Annotated[str | None, Query(max_length=100)] = None,
    request_id: Annotated[
        str | None,
        Query(
            max_length=64,
            description="The predictions one request made (its X-Request-ID, or the "
            "request_id of its answer).",
        ),
    ] = None,
    key_id: Annotated[
        str | None,
        Query(max_length=64, description="Admin keys only: one key's predictions."),
    ] = None,
    shadow_of: Annotated[
        str | None,
        Query(
            max_length=80,
            description="A prediction's shadow scores: what the model's shadow version "
            "answered for the same input (not listed otherwise).",
        ),
    ] = None,
    reviewed: Annotated[
        bool | None,
        Query(
            description="true: only predictions with reviewer feedback; false: only those "
            "without (a review queue)."
        ),
    ] = None,
    order: Annotated[
        Literal["newest", "oldest"],
        Query(description="newest first (the history), or oldest first (a review queue)."),
    ] = "newest",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> PredictionPage:
    if key_id is not None and not caller.admin:
        raise ForbiddenError(
            "filtering by key_id needs an admin key; an ordinary key lists its own "
            "predictions (leave key_id out)"
        )
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise BadRequestError(
                f"{name} has no time zone; write it in ISO 8601 with one, e.g. 2026-11-22T08:00:00Z"
            )
    page = await store.list(
        caller,
        PredictionFilter(
            since=since,
            until=until,
            verdict=verdict,
            model_version=model_version,
            request_id=request_id,
            shadow_of=shadow_of,
            key_id=key_id,
            reviewed=reviewed,
            oldest_first=order == "oldest",
        ),
        cursor=cursor,
        limit=limit,
    )
    return PredictionPage(
        items=[PredictionModel.build(item) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/{prediction_id}/feedback",
    response_model=PredictionModel,
    summary="Record a reviewer's label (real or fake) and note for a prediction",
    description="The reviewer is the calling key. The latest label is shown as `review` "
    "beside the model's verdict; earlier ones are kept (`reviews` counts them).",
    responses=RESPONSES | only(STORE_ERRORS, 422),
)
async def add_feedback(
    prediction_id: PredictionId,
    feedback: FeedbackRequest,
    caller: CallerDep,
    store: StoreDep,
) -> PredictionModel:
    stored = await store.add_feedback(
        prediction_id, caller, label=feedback.label, note=feedback.note
    )
    return PredictionModel.build(stored)


@router.delete(
    "/{prediction_id}",
    status_code=204,
    response_class=Response,
    summary="Erase a stored prediction, its feedback and, when no other prediction "
    "refers to the same bytes, the kept input (erasure requests)",
    responses=RESPONSES,
)
async def delete_prediction(
    prediction_id: PredictionId, caller: CallerDep, store: StoreDep, recorder: RecorderDep
) -> Response:
    await recorder.erase_input(await store.delete(prediction_id, caller))
    return Response(status_code=204)
