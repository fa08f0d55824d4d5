"""Judging an upload and shaping the answer: what a request and an asynchronous job share.

Each function takes the model version the request runs on (its model's route picks it
unless the request names one), looks the input up in the exact cache, asks that version
otherwise, and returns the answer with the store rows that record it; the caller saves them
(a request at once, a job in the same transaction that marks it done). The request's
context says who asks, for which model, and how the model's work is cancelled (a request's
when the client hangs up; a job's runs to the end). Where the model has a shadow version, a
single image is scored by it too, in the background, and recorded beside the answer without
changing it. The file's content credentials are read beside the model's work and may
change the verdict (``veracity.provenance.verdict``); the model's own stays in the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TypeVar

from veracity.answers import (
    BatchItem,
    BatchItemError,
    BatchResponse,
    ExplanationModel,
    InferResponse,
    VerdictFields,
    VideoResponse,
    provenance_update,
)
from veracity.callers import Caller
from veracity.errors import VeracityError
from veracity.images import image_media_type
from veracity.inference.explanation import Explanation, ExplanationMethod
from veracity.inference.explanation import explain as explain_prediction
from veracity.provenance.reader import CredentialReader
from veracity.provenance.report import ProvenanceModel
from veracity.receipts import ReceiptClaims, ReceiptSigner
from veracity.serving.admission import Admission
from veracity.serving.context import RequestContext
from veracity.serving.recording import (
    Recorder,
    build_row,
    sha256_hex,
    video_media_type,
)
from veracity.serving.runner import InferenceResult, ModelRunner
from veracity.serving.service import ModelService
from veracity.store.predictions import Kind, new_prediction_id
from veracity.store.schema import PredictionRow
from veracity.video.aggregate import AggregationRule
from veracity.video.analysis import VideoAnalysis
from veracity.video.plan import SamplingPlan, VideoLimits

T = TypeVar("T")
A = TypeVar("A", bound=InferResponse | VideoResponse)


def credited(answer: A, provenance: ProvenanceModel | None) -> A:
    """``answer`` with what its content credentials say, and the verdict they leave."""
    update = provenance_update(answer.verdict, answer.reasons, provenance)
    return answer.model_copy(update=update)  # type: ignore[return-value]


async def _credentials(
    reader: CredentialReader | None, data: bytes, media_type: str
) -> ProvenanceModel | None:
    return None if reader is None else await reader.read(data, media_type)


def _fingerprint(reader: CredentialReader | None) -> str:
    return "off" if reader is None else reader.options.fingerprint


def _stored_key(key: str, answer: InferResponse | VideoResponse, prediction_id: str) -> str:
    """The cache key the row is kept under: ``key``, unless its credentials went unread for
    a reason of the moment (a timeout, busy readers); such an answer is recorded under a
    key of its own that nothing looks up, so the next upload of the file is read again."""
    if answer.provenance is not None and answer.provenance.state == "unreadable":
        return hashlib.sha256(f"{key}:{prediction_id}".encode()).hexdigest()
    return key


def video_answer(request_id: str, model: ModelRunner, result: VideoAnalysis) -> VideoResponse:
    """The answer for a judged video (a request's, or a job's result)."""
    return VideoResponse.build(
        result,
        request_id=request_id,
        thresholds=model.policy.thresholds,
        calibration_version=model.calibration_version,
        model_name=model.name,
        model_version=model.version,
    )


def infer_answer(
    request_id: str,
    model: ModelRunner,
    result: InferenceResult,
    *,
    explain: bool = False,
    explained: Explanation | None = None,
) -> InferResponse:
    """The answer for a judged image (a request's, a batch item's, or a job's); with
    ``explain``, the patch grid, or ``explained`` where another method computed one."""
    explanation = None
    if explain:
        found = explained or explain_prediction(
            model.predictor.config, result.prediction, result.verdict.faces
        )
        explanation = ExplanationModel(
            method=found.method,
            grid=None if found.grid is None else [list(row) for row in found.grid],
            reason=found.reason,
        )
    fields = VerdictFields.build(
        result.verdict,
        thresholds=model.policy.thresholds,
        calibration_version=model.calibration_version,
    )
    return InferResponse(
        **fields.model_dump(),
        request_id=request_id,
        fake_prob=result.prediction.fake_prob,
        real_prob=result.prediction.real_prob,
        label=result.prediction.label,
        model_name=model.name,
        model_version=model.version,
        timings_ms={"preprocess": result.preprocess_ms, "inference": result.inference_ms},
        batch_size=result.batch_size,
        explanation=explanation,
    )


def finished(answer: T, row: PredictionRow, stored: bool, signer: ReceiptSigner | None) -> T:
    """The answer with where it is kept (``prediction_id`` only when it really is) and,
    where the deployment signs, its receipt."""
    assert isinstance(answer, InferResponse | VideoResponse)
    prediction_id = row.id if stored else None
    update: dict[str, object] = {"prediction_id": prediction_id, "stored": stored}
    if signer is not None:
        update["receipt"] = signer.sign(
            ReceiptClaims(
                request_id=answer.request_id,
                prediction_id=prediction_id,
                input_sha256=row.input_sha256,
                model_name=row.model_name,
                model_version=row.model_version,
                weights_sha256=row.weights_sha256,
                calibration_version=row.calibration_version,
                verdict=answer.verdict,
                fake_prob=answer.fake_prob,
                real_prob=answer.real_prob,
                cached=answer.cached,
                model_verdict=answer.model_verdict,
                provenance=None
                if answer.provenance is None
                else answer.provenance.model_dump(
                    include={"present", "state", "digital_source_type", "signer"}
                ),
            )
        )
    return answer.model_copy(update=update)  # type: ignore[return-value]


def _image_key(
    model: ModelRunner,
    recorder: Recorder,
    digest: str,
    robustness_check: bool | None,
    credentials: CredentialReader | None,
    explain: bool = False,
    method: ExplanationMethod = "patch_probabilities",
) -> str:
    check = model.policy.robustness_check if robustness_check is None else robustness_check
    # The trust list decides a credential's state: answers judged against another are not
    # replayed.
    options: dict[str, object] = {
        "robustness_check": check,
        "provenance": _fingerprint(credentials),
    }
    if explain:
        # Named only when asked for, so the keys of answers without one stay as they were
        # (earlier stored answers still hit).
        options["explain"] = True
        if method != "patch_probabilities":
            options["explain_method"] = method
    return recorder.key(model, digest, "image", options)


async def _image_outcome(
    model: ModelRunner,
    recorder: Recorder,
    caller: Caller,
    data: bytes,
    *,
    digest: str,
    key: str,
    hit: PredictionRow | None,
    result: InferenceResult | None,
    request_id: str,
    prediction_id: str,
    kind: Kind,
    credentials: CredentialReader | None,
    explain: bool = False,
    explained: Explanation | None = None,
) -> tuple[InferResponse, PredictionRow]:
    """An image's answer (the stored one on a cache hit, else ``result``'s), with what the
    store knows of its near-duplicates, and the row that records it."""
    # The pHash was taken from the image decoded for the model, in the decode pool (no
    # second decode); a cache hit's is the one stored with it (the same bytes).
    media_type = image_media_type(data)
    if hit is not None:
        answer = InferResponse(**hit.response, request_id=request_id, cached=True)
        phash = hit.perceptual_hash
    else:
        assert result is not None
        answer = infer_answer(request_id, model, result, explain=explain, explained=explained)
        answer = credited(answer, await _credentials(credentials, data, media_type))
        phash = result.perceptual_hash
    if recorder.store is None:
        phash = None
    answer = answer.model_copy(update={"seen_before": await recorder.seen_before(phash, caller)})
    row = build_row(
        prediction_id=prediction_id,
        request_id=request_id,
        caller=caller,
        kind=kind,
        digest=digest,
        media_type=media_type,
        size_bytes=len(data),
        model=model,
        answer=answer,
        key=_stored_key(key, answer, prediction_id),
        cached_from=hit.id if hit is not None else None,
        phash=phash,
    )
    return answer, row


async def judge_image(
    service: ModelService,
    recorder: Recorder,
    context: RequestContext,
    data: bytes,
    *,
    robustness_check: bool | None,
    credentials: CredentialReader | None = None,
    explain: bool = False,
    explain_method: ExplanationMethod = "patch_probabilities",
) -> tuple[InferResponse, PredictionRow]:
    """One image's answer (``explain``: with the explanation grid, by ``explain_method``;
    ``credentials``: with its content credentials) and its row."""
    caller, request_id = context.caller, context.request_id
    digest = sha256_hex(data)
    async with service.use(context.model, context.version) as chosen:
        runner = chosen.runner
        key = _image_key(
            runner, recorder, digest, robustness_check, credentials, explain, explain_method
        )
        # The store's lookup runs under the request's admission slot and deadline, as the
        # model's work does: a request refused as overload costs the database nothing, and
        # a slow database answers 504 within the deadline rather than after it.
        async with service.admission.admitted():
            hit = (await recorder.cached([key], caller)).get(key)
            result = explained = None
            if hit is None:
                work = runner.predict(data, robustness_check=robustness_check)
                result = await context.run(work)
        # Grad-CAM (several times a prediction's cost) holds a slot and deadline of its own.
        if hit is None and explain and explain_method == "grad_cam":
            explained = await context.run(runner.grad_cam(data))
        answer, row = await _image_outcome(
            runner,
            recorder,
            caller,
            data,
            digest=digest,
            key=key,
            hit=hit,
            result=result,
            request_id=request_id,
            prediction_id=new_prediction_id(),
            kind="image",
            credentials=credentials,
            explain=explain,
            explained=explained,
        )
    if chosen.shadow is not None:
        shadow_of = row.id

        async def score(shadow: ModelRunner) -> None:
            await _shadow_image(
                shadow, service, recorder, caller, data, digest, answer, shadow_of, robustness_check
            )

        service.shadow(chosen.shadow, score)
    return answer, row


async def _shadow_image(
    shadow: ModelRunner,
    service: ModelService,
    recorder: Recorder,
    caller: Caller,
    data: bytes,
    digest: str,
    primary: InferResponse,
    shadow_of: str,
    robustness_check: bool | None,
) -> None:
    """Score ``data`` on the shadow version, compare with the primary's verdict, and record
    it beside the primary's prediction (never returned to the client)."""
    result = await shadow.predict(data, robustness_check=robustness_check)
    answer = infer_answer(primary.request_id, shadow, result)
    # The models are compared, not what the file's credentials made of the primary's.
    service.compare_shadow(
        shadow, agree=answer.verdict == (primary.model_verdict or primary.verdict)
    )
    row = build_row(
        prediction_id=new_prediction_id(),
        request_id=primary.request_id,
        caller=caller,
        kind="shadow",
        digest=digest,
        media_type=image_media_type(data),
        size_bytes=len(data),
        model=shadow,
        answer=answer,
        key=_image_key(shadow, recorder, digest, robustness_check, None),
        shadow_of=shadow_of,
    )
    await recorder.save([row])


async def judge_video(
    service: ModelService,
    recorder: Recorder,
    context: RequestContext,
    data: bytes,
    *,
    plan: SamplingPlan,
    rule: AggregationRule,
    prediction_id: str | None = None,
    limits: VideoLimits | None = None,
    credentials: CredentialReader | None = None,
) -> tuple[VideoResponse, PredictionRow]:
    caller, request_id, deadline = context.caller, context.request_id, context.deadline
    # Up to the video upload limit: hashed off the event loop.
    digest = await asyncio.to_thread(sha256_hex, data)
    run = rule.run
    options = {
        "count": plan.count,
        "every_s": plan.every_s,
        "aggregation": rule.method,
        # The deployment's sustained-run rule shapes the verdict as much as the method.
        "run": [run.min_frames, run.min_duration_s, run.max_gap],
        # So does temporal contrast (answers stored before it existed had none).
        "contrast": [rule.contrast.min_step, rule.contrast.max_share, rule.contrast.min_side],
        "provenance": _fingerprint(credentials),
    }
    async with service.use(context.model, context.version) as chosen:
        runner = chosen.runner
        key = recorder.key(runner, digest, "video", options)
        # As for an image (judge_image): the lookup under the request's slot and deadline.
        # The analysis inside takes a video place of its own; an answer from the store needs
        # none, so a stored video is answered while every place is taken.
        async with service.admission.admitted(runner.video_deadline(deadline)):
            hit = (await recorder.cached([key], caller)).get(key)
            if hit is None:
                work = runner.predict_video(
                    data, plan=plan, rule=rule, limits=limits, deadline=deadline
                )
                result = await context.run(work)
        if hit is not None:
            answer = VideoResponse(**hit.response, request_id=request_id, cached=True)
        else:
            answer = video_answer(request_id, runner, result)
            media_type = video_media_type(result.info.container)
            answer = credited(answer, await _credentials(credentials, data, media_type))
    prediction_id = prediction_id or new_prediction_id()
    row = build_row(
        prediction_id=prediction_id,
        request_id=request_id,
        caller=caller,
        kind="video",
        digest=digest,
        media_type=video_media_type(answer.video.container),
        size_bytes=len(data),
        model=runner,
        answer=answer,
        key=_stored_key(key, answer, prediction_id),
        cached_from=hit.id if hit is not None else None,
    )
    return answer, row


async def judge_batch(
    service: ModelService,
    recorder: Recorder,
    context: RequestContext,
    files: list[tuple[str | None, bytes]],
    *,
    robustness_check: bool | None,
    id_prefix: str | None = None,
    credentials: CredentialReader | None = None,
) -> tuple[list[tuple[str | None, InferResponse | VeracityError]], list[PredictionRow]]:
    """Each file's answer or error, and the rows of the answers (item ``i`` is stored as
    ``{id_prefix}-{i}`` when a job names its prefix, else under a new ID of its own). The
    whole batch runs on one version."""
    uploads = [data for _, data in files]
    digests = await asyncio.to_thread(lambda: [sha256_hex(data) for data in uploads])
    async with service.use(context.model, context.version) as chosen:
        return await _judge_batch_on(
            chosen.runner,
            service.admission,
            recorder,
            context,
            files,
            digests,
            id_prefix=id_prefix,
            robustness_check=robustness_check,
            credentials=credentials,
        )


async def _judge_batch_on(
    runner: ModelRunner,
    admission: Admission,
    recorder: Recorder,
    context: RequestContext,
    files: list[tuple[str | None, bytes]],
    digests: list[str],
    *,
    id_prefix: str | None,
    robustness_check: bool | None,
    credentials: CredentialReader | None,
) -> tuple[list[tuple[str | None, InferResponse | VeracityError]], list[PredictionRow]]:
    caller, request_id = context.caller, context.request_id
    uploads = [data for _, data in files]
    keys = [_image_key(runner, recorder, d, robustness_check, credentials) for d in digests]
    # As for an image (judge_image): the lookup under the request's slot and deadline.
    async with admission.admitted(runner.batch_deadline(len(uploads))):
        hits = await recorder.cached(keys, caller)
        missing = [i for i, key in enumerate(keys) if key not in hits]
        computed = await context.run(
            runner.predict_many([uploads[i] for i in missing], robustness_check=robustness_check)
        )
    fresh = dict(zip(missing, computed, strict=True))
    answers: list[tuple[str | None, InferResponse | VeracityError]] = []
    rows = []
    for index, ((filename, data), digest, key) in enumerate(zip(files, digests, keys, strict=True)):
        outcome = fresh.get(index)
        if isinstance(outcome, VeracityError):
            answers.append((filename, outcome))
            continue
        answer, row = await _image_outcome(
            runner,
            recorder,
            caller,
            data,
            digest=digest,
            key=key,
            hit=hits.get(key),
            result=outcome,
            request_id=request_id,
            prediction_id=new_prediction_id() if id_prefix is None else f"{id_prefix}-{index}",
            kind="batch_item",
            credentials=credentials,
        )
        answers.append((filename, answer))
        rows.append(row)
    return answers, rows


def batch_answer(
    request_id: str,
    answers: list[tuple[str | None, InferResponse | VeracityError]],
    rows: list[PredictionRow],
    stored: bool,
    signer: ReceiptSigner | None,
) -> BatchResponse:
    """``rows``: those of the answers (not the errors), in order."""
    items = []
    remaining = iter(rows)
    for index, (filename, answer) in enumerate(answers):
        if isinstance(answer, VeracityError):
            error = BatchItemError(code=answer.code, message=answer.message)
            items.append(BatchItem(index=index, filename=filename, result=None, error=error))
        else:
            result = finished(answer, next(remaining), stored, signer)
            items.append(BatchItem(index=index, filename=filename, result=result, error=None))
    failed = sum(1 for item in items if item.error is not None)
    return BatchResponse(
        request_id=request_id, items=items, succeeded=len(items) - failed, failed=failed
    )
