"""POST /infer/batch: several images in one request, each answered on its own."""

from __future__ import annotations

from fastapi import APIRouter, Query

from veracity.answers import BatchResponse
from veracity.api.deps import CredentialsDep, ModelChoiceDep, RecorderDep, SignerDep
from veracity.api.openapi import INFER_ERRORS, upload_schema
from veracity.api.uploads import UploadDep
from veracity.serving.judging import batch_answer, judge_batch

router = APIRouter()


@router.post(
    "/infer/batch",
    response_model=BatchResponse,
    summary="Classify several images in one request; each item answers on its own",
    description="Up to VERACITY_BATCH_MAX_FILES files in the multipart field `files`. "
    "An item that is not an accepted image gets its own `error` (the error shape's "
    "code and message) and the others are still judged; the request itself fails "
    "only for what concerns all items (auth, size, overload). Each item's content "
    "credentials are read as for /infer (`provenance`, `model_verdict`).",
    responses=INFER_ERRORS,
    openapi_extra=upload_schema("files", "The images (repeat the field).", many=True),
)
async def infer_batch(
    upload: UploadDep,
    recorder: RecorderDep,
    signer: SignerDep,
    choice: ModelChoiceDep,
    credentials: CredentialsDep,
    robustness_check: bool | None = Query(default=None),
) -> BatchResponse:
    files = await upload.admitted_files()
    context = upload.context(choice.model, choice.version)
    answers, rows = await judge_batch(
        upload.service,
        recorder,
        context,
        files,
        robustness_check=robustness_check,
        credentials=credentials,
    )
    stored = await recorder.save(rows, [data for _, data in files])
    return batch_answer(context.request_id, answers, rows, stored, signer)
