"""What running a job means: the same judging as the synchronous routes, under a job's
limits, answered as POST /infer/video or /infer/batch would answer."""

from __future__ import annotations

from veracity.callers import Caller
from veracity.jobs.params import VideoJobParams, read_params
from veracity.jobs.records import Job, JobInput
from veracity.jobs.runner import JobOutcome
from veracity.provenance.reader import CredentialReader
from veracity.receipts import ReceiptSigner
from veracity.serving.admission import Deadline
from veracity.serving.context import RequestContext
from veracity.serving.judging import batch_answer, finished, judge_batch, judge_video
from veracity.serving.recording import Recorder
from veracity.serving.service import ModelService
from veracity.video.aggregate import AggregationRule
from veracity.video.plan import SamplingPlan, VideoLimits

JOB_TIMEOUT_SETTING = "VERACITY_JOB_TIMEOUT_S"


class JobExecutor:
    """Runs one claimed job for the job runner (``jobs.runner.Execute``).

    ``video_limits`` and ``timeout_s`` are a job's own: a longer duration, decoding budget
    and deadline than a request's; ``video_rule`` is the deployment's (the job's own
    parameters choose only its method).
    """

    def __init__(
        self,
        service: ModelService,
        recorder: Recorder,
        signer: ReceiptSigner | None,
        *,
        video_limits: VideoLimits,
        video_rule: AggregationRule,
        timeout_s: float,
        credentials: CredentialReader | None = None,
    ) -> None:
        self._service = service
        self._recorder = recorder
        self._signer = signer
        self._video_limits = video_limits
        self._video_rule = video_rule
        self._deadline = Deadline(timeout_s, JOB_TIMEOUT_SETTING)
        self._credentials = credentials

    async def __call__(self, job: Job, inputs: list[JobInput]) -> JobOutcome:
        params = read_params(job.kind, job.params)
        context = RequestContext(
            request_id=job.request_id,
            caller=Caller(key_id=job.key_id, admin=False),
            model=params.model,
            version=params.model_version,
            deadline=self._deadline,
        )
        if isinstance(params, VideoJobParams):
            return await self._video(job, inputs[0], params, context)
        answers, rows = await judge_batch(
            self._service,
            self._recorder,
            context,
            [(item.filename, item.data) for item in inputs],
            id_prefix=job.id,
            robustness_check=params.robustness_check,
            credentials=self._credentials,
        )
        await self._recorder.keep_inputs(rows, [item.data for item in inputs])
        batch = batch_answer(job.request_id, answers, rows, True, self._signer)
        return JobOutcome(batch.model_dump(mode="json"), rows)

    async def _video(
        self, job: Job, video: JobInput, params: VideoJobParams, context: RequestContext
    ) -> JobOutcome:
        answer, row = await judge_video(
            self._service,
            self._recorder,
            context,
            video.data,
            prediction_id=job.id,
            plan=SamplingPlan(count=params.count, every_s=params.every_s),
            rule=self._video_rule.with_method(params.aggregation),
            limits=self._video_limits,
            credentials=self._credentials,
        )
        # Recorded with the job's completion, in the same transaction.
        await self._recorder.keep_inputs([row], [video.data])
        result = finished(answer, row, True, self._signer).model_dump(mode="json")
        return JobOutcome(result, [row])
