"""The answer contract: what the service answers, stores, caches, replays, signs and prints.

An answer is one of these models whatever carries it: an HTTP response, a job's result, a
stored prediction replayed from the exact cache, the claims a receipt signs, the CLI's JSON.
The HTTP layer (``veracity.api``) returns them; it does not own them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from veracity.answer_examples import (
    DECLARED_AI_EXAMPLE,
    EXPLAINED_EXAMPLE,
    INCONCLUSIVE_EXAMPLE,
    INFER_EXAMPLE,
)
from veracity.provenance.report import ProvenanceModel
from veracity.provenance.verdict import with_provenance
from veracity.verdicts.actions import REASON_ACTIONS
from veracity.verdicts.decision import Thresholds, Verdict
from veracity.verdicts.quality import Reason, ReasonCode

if TYPE_CHECKING:
    from veracity.video.analysis import VideoAnalysis

_REASON_DOC = (
    "Why the verdict is what it is. Codes: out_of_distribution (unlike the training data), "
    "near_threshold (fake_prob between the operating points), low_resolution, "
    "heavy_compression, no_content (near-uniform), unstable (flips when re-encoded or "
    "resized; only with the robustness check), declared_ai_generated (valid content "
    "credentials declare it AI-generated: fake whatever the model says), provenance_invalid "
    "(content credentials that fail validation: at least inconclusive)."
)


class ReasonModel(BaseModel):
    code: ReasonCode = Field(description="Stable identifier to branch on.")
    message: str = Field(description="What it means for this image, for a person.")
    action: str | None = Field(
        default=None,
        description="What to do about it, for a person (the README's table); null in "
        "answers stored before it was sent.",
    )

    @classmethod
    def of(cls, reason: Reason) -> ReasonModel:
        return cls(code=reason.code, message=reason.message, action=REASON_ACTIONS[reason.code])


class QualityModel(BaseModel):
    width: int
    height: int
    jpeg_quality: int | None = Field(
        description="Estimated from the file's quantisation table; null if not a JPEG."
    )
    content_std: float = Field(description="Luma standard deviation in grey levels.")


class StabilityModel(BaseModel):
    score: float = Field(
        ge=0.0, le=1.0, description="1 - the largest change of fake_prob across variants."
    )
    variants: dict[str, float] = Field(
        description="fake_prob after each variant: jpeg75 (re-encoded at quality 75), "
        "half_size (halved; skipped when too small)."
    )
    flipped: list[str] = Field(description="Variants whose verdict is the opposite class.")


class ThresholdsModel(BaseModel):
    real: float = Field(description="fake_prob at or below this is 'real'.")
    fake: float = Field(description="fake_prob at or above this is 'fake'.")


class VerdictFields(BaseModel):
    """What the verdict adds to a response; shared by /infer and ``veracity predict``."""

    verdict: Literal["real", "fake", "inconclusive"] = Field(
        description="real or fake only when the model can judge this input and fake_prob "
        "is past an operating point; otherwise inconclusive, with reasons."
    )
    reasons: list[ReasonModel] = Field(description=_REASON_DOC)
    calibrated: bool = Field(
        description="Whether fake_prob/real_prob are calibrated (the checkpoint has a "
        "calibration); uncalibrated checkpoints report the raw softmax."
    )
    calibration_version: int | None = Field(description="The checkpoint's calibration fit.")
    thresholds: ThresholdsModel = Field(description="This deployment's operating points.")
    ood_score: float | None = Field(
        description="Distance to the training data, as a multiple of the gate's threshold "
        "(above 1: out_of_distribution). Null when the checkpoint has no gate."
    )
    quality: QualityModel
    stability: StabilityModel | None = Field(
        description="The robustness self-check (null unless it ran: ?robustness_check=true "
        "or VERACITY_ROBUSTNESS_CHECK)."
    )
    faces: int | None = Field(
        default=None,
        description="Faces found, for checkpoints trained on face crops (the most "
        "suspicious face decides; 0: inconclusive / no_face). Null when the model reads "
        "the whole image.",
    )

    @classmethod
    def build(
        cls, verdict: Verdict, *, thresholds: Thresholds, calibration_version: int | None
    ) -> VerdictFields:
        stability = verdict.stability
        return cls(
            verdict=verdict.verdict,
            reasons=[ReasonModel.of(r) for r in verdict.reasons],
            calibrated=calibration_version is not None,
            calibration_version=calibration_version,
            thresholds=ThresholdsModel(
                real=thresholds.real_threshold, fake=thresholds.fake_threshold
            ),
            ood_score=verdict.ood_score,
            quality=QualityModel(
                width=verdict.quality.width,
                height=verdict.quality.height,
                jpeg_quality=verdict.quality.jpeg_quality,
                content_std=verdict.quality.content_std,
            ),
            faces=verdict.faces,
            stability=None
            if stability is None
            else StabilityModel(
                score=max(0.0, min(1.0, stability.score)),
                variants=stability.variants,
                flipped=list(stability.flipped),
            ),
        )


class ExplanationModel(BaseModel):
    """Where in the image the model saw the evidence (``?explain=true``)."""

    method: Literal["patch_probabilities", "grad_cam", "unavailable"] = Field(
        description="patch_probabilities: each cell is the probability of the native-"
        "resolution patch the model scored in that cell. grad_cam (asked for with "
        "explain_method=grad_cam): Grad-CAM over the last convolution, a 16x16 grid of "
        "relative evidence for 'fake', the most telling cell 1 (not probabilities). "
        "unavailable: this checkpoint has no per-region scores (it reads one resized crop, "
        "or face crops); grid is null and reason says why."
    )
    grid: list[list[float]] | None = Field(
        description="Rows from the top, each cell from the left: the image divided evenly "
        "into rows x columns (cell (r, c) spans columns [c*W/cols, (c+1)*W/cols) of a W px "
        "wide image, and likewise down). A cell's value is the checkpoint's calibration "
        "applied to its patch's score, in [0, 1], comparable with fake_prob. The patch is a "
        "sample of the cell (the model's input size, e.g. 64 px), not all of it."
    )
    reason: str | None = Field(default=None, description="Why there is no grid.")


class StoreFields(BaseModel):
    """Where the answer is kept (the results store), and whether it came from there."""

    prediction_id: str | None = Field(
        default=None,
        description="ID of the stored prediction (GET /predictions/{id}): the service's "
        "own, unique to this verdict (not the request_id, which a client may reuse). Null "
        "when the verdict was not stored.",
    )
    stored: bool = Field(
        default=False,
        description="The verdict is recorded in the results store. False when the store "
        "is disabled or failed: the answer stands but cannot be read back later.",
    )
    cached: bool = Field(
        default=False,
        description="Answered from the store without inference: the same bytes were "
        "judged before by the same model, calibration, policy and options.",
    )
    receipt: str | None = Field(
        default=None,
        description="A signed receipt of this verdict (compact JWS, Ed25519) over the "
        "request and prediction IDs, the input's SHA-256, the model and its weights' digest, "
        "the calibration version, the verdict and probabilities, and the time; verify it "
        "with the keys at /.well-known/jwks.json or offline with `veracity verify-receipt`. "
        "Null when the deployment has no signing key.",
    )


class ProvenanceFields(BaseModel):
    """What the file's content credentials say, beside what the model sees."""

    provenance: ProvenanceModel | None = Field(
        default=None,
        description="The file's C2PA content credentials, read and validated; "
        "present: false when it has none. Null when the deployment does not read them "
        "(VERACITY_PROVENANCE_ENABLED=false) or for answers stored before they were read.",
    )
    model_verdict: Literal["real", "fake", "inconclusive"] | None = Field(
        default=None,
        description="The model's own verdict, before the content credentials were taken "
        "into account (README, 'Provenance'); equal to verdict unless a reason says why not.",
    )


def provenance_update(
    verdict: Literal["real", "fake", "inconclusive"],
    reasons: list[ReasonModel],
    provenance: ProvenanceModel | None,
) -> dict[str, Any]:
    """The fields an answer takes from the file's content credentials: the verdict they
    leave, the model's own beside it, the reasons they add, and what they say."""
    answered, added = with_provenance(verdict, provenance)
    return {
        "verdict": answered,
        "model_verdict": verdict,
        "reasons": [*reasons, *(ReasonModel.of(r) for r in added)],
        "provenance": provenance,
    }


class SeenBeforeModel(BaseModel):
    """An earlier prediction of a near-duplicate (the same picture re-encoded, resized...)."""

    model_config = ConfigDict(protected_namespaces=())

    prediction_id: str
    request_id: str
    created_at: datetime
    distance: int = Field(
        description="Bits of the 256-bit perceptual hash (pHash) that differ: 0 for the same "
        "picture; re-encodes and resized copies measure up to about 16; distinct pictures "
        "about 90 and more. Matches are reported up to VERACITY_SEEN_BEFORE_MAX_DISTANCE."
    )
    verdict: Literal["real", "fake", "inconclusive"]
    fake_prob: float | None
    model_version: str
    review_label: Literal["real", "fake"] | None = Field(
        description="The latest reviewer label of that prediction, if it was reviewed."
    )


class InferResponse(VerdictFields, StoreFields, ProvenanceFields):
    """``request_id``, ``fake_prob`` and ``real_prob`` are the contract; the rest is additive."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                INFER_EXAMPLE,
                INCONCLUSIVE_EXAMPLE,
                EXPLAINED_EXAMPLE,
                DECLARED_AI_EXAMPLE,
            ]
        },
    )

    request_id: str = Field(description="Also returned in the X-Request-ID header.")
    fake_prob: float = Field(
        ge=0.0,
        le=1.0,
        description="Calibrated probability that the image is manipulated, valid for inputs "
        "like the calibration data: read it together with verdict and reasons.",
    )
    real_prob: float = Field(ge=0.0, le=1.0, description="1 - fake_prob (calibrated).")
    label: Literal["real", "fake"] = Field(
        description="The more probable class, kept for older clients; it never says "
        "'inconclusive': use verdict."
    )
    model_name: str
    model_version: str
    timings_ms: dict[str, float] = Field(description="Server-side preprocess/inference times.")
    batch_size: int = Field(
        ge=0,
        description="Inputs that shared this forward pass (0: none ran, as for no_face).",
    )
    seen_before: list[SeenBeforeModel] | None = Field(
        default=None,
        description="Earlier predictions (yours, or every key's for an admin key) of "
        "near-duplicates of this image, nearest first, at most 5; [] when there are none; "
        "null when the deployment keeps no store or the lookup failed.",
    )
    explanation: ExplanationModel | None = Field(
        default=None,
        description="Only with ?explain=true (null otherwise): the grid of per-region "
        "probabilities; drawn as a PNG by GET /predictions/{id}/explanation.png.",
    )


class FrameModel(BaseModel):
    timestamp_s: float = Field(description="The frame's presentation time from the start.")
    fake_prob: float = Field(ge=0.0, le=1.0, description="Calibrated, for this frame.")
    verdict: Literal["real", "fake", "inconclusive"]
    reasons: list[ReasonCode] = Field(description="Reason codes of this frame's verdict.")
    ood_score: float | None
    faces: int | None = Field(default=None, description="Faces found (face checkpoints).")


class SegmentModel(BaseModel):
    start_s: float
    end_s: float
    frames: int = Field(
        description="Sampled frames from its first fake frame to its last: the fake ones "
        "and, between them, at most VERACITY_VIDEO_RUN_MAX_GAP in a row that are not. For a "
        "segment found by temporal contrast (`step` set): every frame of the stretch."
    )
    fake_prob: float = Field(description="Mean over the segment's usable frames.")
    peak_fake_prob: float
    # A default, so that answers stored before the field existed still read.
    sustained: bool = Field(
        default=False,
        description="A sustained run: enough by itself to make the video fake (README, 'Video').",
    )
    step: float | None = Field(
        default=None,
        description="Found by temporal contrast: how far (in logits of fake_prob) its "
        "lowest frame lies above the higher of the medians of its shot before and after it; "
        "null for a run of "
        "fake frames.",
    )


class VideoInfoModel(BaseModel):
    container: Literal["mp4", "matroska"]
    codec: str
    width: int = Field(description="Coded width (before the display rotation).")
    height: int
    frame_rate: float | None = Field(description="Average; null if the file does not say.")
    rotation: int = Field(description="Display rotation applied, degrees counter-clockwise.")


class AggregationModel(BaseModel):
    method: Literal["confident", "mean", "max", "top_k"]
    frames_used: int = Field(
        description="Frames whose probability entered the aggregate (not made "
        "inconclusive by a gate)."
    )


class VideoResponse(StoreFields, ProvenanceFields):
    """A video's verdict, its frames' timeline and the segments that look manipulated."""

    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    verdict: Literal["real", "fake", "inconclusive"]
    reasons: list[ReasonModel] = Field(
        description="Video-level reasons: no_frames, too_short, too_many_inconclusive_frames, "
        "near_threshold, suspicious_segments, doubtful_stretch; and the content "
        "credentials' declared_ai_generated and provenance_invalid."
    )
    fake_prob: float | None = Field(
        description="Calibrated, aggregated over the usable frames; null when none is."
    )
    real_prob: float | None
    aggregation: AggregationModel
    frames_analysed: int
    duration_s: float
    video: VideoInfoModel
    timeline: list[FrameModel]
    segments: list[SegmentModel] = Field(description="Most suspicious first.")
    calibrated: bool
    calibration_version: int | None
    thresholds: ThresholdsModel
    model_name: str
    model_version: str
    timings_ms: dict[str, float] = Field(
        description="decode (seek, decode, preprocess of the sampled frames) and total."
    )
    frames_decoded: int = Field(description="Frames the decoder produced to reach the samples.")

    @classmethod
    def build(
        cls,
        result: VideoAnalysis,
        *,
        request_id: str,
        thresholds: Thresholds,
        calibration_version: int | None,
        model_name: str,
        model_version: str,
    ) -> VideoResponse:
        verdict = result.verdict
        return cls(
            request_id=request_id,
            verdict=verdict.verdict,
            reasons=[ReasonModel.of(r) for r in verdict.reasons],
            fake_prob=None if verdict.fake_prob is None else round(verdict.fake_prob, 6),
            real_prob=None if verdict.real_prob is None else round(verdict.real_prob, 6),
            aggregation=AggregationModel(method=verdict.method, frames_used=verdict.frames_used),
            frames_analysed=verdict.frames_analysed,
            duration_s=result.info.duration_s,
            video=VideoInfoModel(
                container=result.info.container,
                codec=result.info.codec,
                width=result.info.width,
                height=result.info.height,
                frame_rate=result.info.frame_rate,
                rotation=result.rotation,
            ),
            timeline=[
                FrameModel(
                    timestamp_s=frame.timestamp_s,
                    fake_prob=round(frame.verdict.fake_prob, 6),
                    verdict=frame.verdict.verdict,
                    reasons=[r.code for r in frame.verdict.reasons],
                    ood_score=frame.verdict.ood_score,
                    faces=frame.verdict.faces,
                )
                for frame in result.frames
            ],
            segments=[
                SegmentModel(
                    start_s=seg.start_s,
                    end_s=seg.end_s,
                    frames=seg.frames,
                    fake_prob=seg.fake_prob,
                    peak_fake_prob=seg.peak_fake_prob,
                    sustained=seg.sustained,
                    step=seg.step,
                )
                for seg in verdict.segments
            ],
            calibrated=calibration_version is not None,
            calibration_version=calibration_version,
            thresholds=ThresholdsModel(
                real=thresholds.real_threshold, fake=thresholds.fake_threshold
            ),
            model_name=model_name,
            model_version=model_version,
            timings_ms={"decode": result.decode_ms, "total": result.total_ms},
            frames_decoded=result.decoded_frames,
        )


class BatchItemError(BaseModel):
    code: str
    message: str


class BatchItem(BaseModel):
    index: int = Field(description="Position of the file in the request.")
    filename: str | None
    result: InferResponse | None = Field(description="Null when this item failed.")
    error: BatchItemError | None = Field(description="This item's error, in the error shape.")


class BatchResponse(BaseModel):
    request_id: str
    items: list[BatchItem]
    succeeded: int
    failed: int
