"""Service configuration: environment variables (prefix ``VERACITY_``) and an optional ``.env``.

Built once by the entry point (or by a test) and passed down; nothing reads the environment
at import time. Every field is validated when ``Settings()`` is constructed, so a bad value
stops the process before it binds a port.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from veracity.cpus import available_cpus
from veracity.demo import default_checkpoint
from veracity.images import (
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_JPEG_SCANS,
    DecodeBudget,
)
from veracity.provenance.options import ProvenanceOptions, load_trust_anchors
from veracity.runtime import BackendChoice, DevicePreference, Precision, default_export_dir
from veracity.settings.monitoring import (
    ENV_PREFIX,
    SETTINGS_CONFIG,
    MonitoringSettings,
)
from veracity.settings.options import (
    AdmissionLimits,
    ImageLimits,
    RegistryOptions,
    RunnerOptions,
    ServiceOptions,
    default_replica_id,
)
from veracity.verdicts.decision import Thresholds, VerdictPolicy
from veracity.verdicts.quality import QualityLimits
from veracity.video.aggregate import AggregationMethod, AggregationRule
from veracity.video.contrast import TemporalContrast
from veracity.video.plan import VideoLimits
from veracity.video.segments import SustainedRun

_IDENTIFIER = "[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
DEFAULT_MODEL_PATTERN = rf"^{_IDENTIFIER}(:{_IDENTIFIER})?$"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(MonitoringSettings):
    """Every setting of the service. ``.env.example`` documents each with its default."""

    model_config = SETTINGS_CONFIG

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys accepted in X-API-Key; several allow rotation.",
    )
    # The previous service read its single key from MODEL_API_KEY; deployments that still
    # set it keep working.
    legacy_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MODEL_API_KEY")
    )
    # Keys with the admin scope: they read, review and erase every key's stored predictions
    # (other keys only their own). They are accepted wherever an ordinary key is.
    admin_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    auth_disabled: bool = Field(
        default=False, description="Serve without API keys. Local development only."
    )
    checkpoint: Path = Field(default_factory=default_checkpoint)
    # A model repository (ROOT/NAME/VERSION/ with one checkpoint each) served instead of
    # the single checkpoint above; the default model (NAME, or NAME:VERSION to pin its
    # version) answers requests that name none; loaded versions share the memory budget
    # (the least recently used is unloaded to make room).
    model_repository: Path | None = None
    default_model: (
        Annotated[
            str,
            Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$"),
        ]
        | None
    ) = None
    model_memory_mb: Annotated[float, Field(gt=0, le=1_048_576)] = 4096.0
    # A request naming a version that is not loaded loads it (within the budget). Off: only
    # an admin's load or promote does, so no client can make the replica load models.
    model_load_on_demand: bool = True
    # Every replica reads the models' desired state from the results store this often (and
    # at once on a PostgreSQL notification): the bound on an admin change reaching it.
    model_sync_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    # This replica's name in GET /models (default: the host's name, which is the pod's on
    # Kubernetes, with the process ID when it is not 1).
    replica_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")] | None = None
    device: DevicePreference = "auto"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8001
    max_upload_mb: Annotated[float, Field(gt=0, le=100)] = 10.0
    max_image_pixels: Annotated[int, Field(ge=1024, le=200_000_000)] = 40_000_000
    # What decoding one image may hold (pixels as stored, a progressive JPEG's coefficients,
    # the RGB copy), estimated before decoding: above it, 413 image_too_large.
    max_decode_mb: Annotated[float, Field(gt=0, le=65_536)] = DEFAULT_MAX_DECODE_BYTES / 2**20
    # Scans a JPEG may have (a progressive one has about 10); above it, 422 invalid_image.
    max_jpeg_scans: Annotated[int, Field(ge=1, le=100_000)] = DEFAULT_MAX_JPEG_SCANS
    log_level: LogLevel = "INFO"
    inference_threads: Annotated[int, Field(ge=1, le=64)] | None = None
    torch_threads: Annotated[int, Field(ge=1, le=256)] | None = None
    inference_streams: Annotated[int, Field(ge=1, le=64)] | None = None
    # auto: ONNX Runtime where it runs and matches PyTorch on the checkpoint, else PyTorch.
    backend: BackendChoice = "auto"
    # INT8 (README, "INT8"): the graph `veracity quantize` built and checked against FP32,
    # from export_dir; auto: only where the check passed and it measures faster here. FP32
    # by default: answers do not change with what an export directory happens to hold.
    precision: Precision = "fp32"
    export_dir: Path = Field(default_factory=default_export_dir)
    max_batch_size: Annotated[int, Field(ge=1, le=256)] = 8
    batch_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0
    shutdown_drain_s: Annotated[float, Field(ge=0, le=600)] = 20.0
    docs_enabled: bool = True
    console_enabled: bool = True  # the reviewer console at /console (off: 404)
    # Admission control: at most max_queue requests are inside the model service at once
    # (decoding, waiting for a batch, or in a forward pass); the next is answered 503 at
    # once. Each admitted request has request_timeout_s to be answered, or it is answered
    # 504 and dropped before it reaches the model.
    max_queue: Annotated[int, Field(ge=1, le=10_000)] = 32
    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    # Time allowed to receive a whole request body; a client trickling bytes gets 408.
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Bytes of request bodies a replica holds at once, counted as they arrive and held until
    # the request is answered; the upload whose bytes would pass it gets 503. One body
    # alone is always taken, so this never refuses an upload its route allows.
    body_budget_mb: Annotated[float, Field(gt=0, le=65_536)] = 256.0
    # Per-key limits (per replica): a rate in the `limits` notation ("20/second",
    # "600/minute") and a number of requests per rolling day. Unset means unlimited.
    rate_limit: str | None = None
    daily_quota: Annotated[int, Field(ge=1)] | None = None
    # Verdict operating points on the calibrated fake_prob: at or below real_threshold is
    # "real", at or above fake_threshold is "fake", between them "inconclusive".
    real_threshold: Annotated[float, Field(ge=0, le=0.5)] = 0.25
    fake_threshold: Annotated[float, Field(ge=0.5, le=1)] = 0.75
    # Input-quality gates: JPEGs below this estimated quality, and images whose luma
    # standard deviation is below min_content_std grey levels, are "inconclusive".
    min_jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 50
    min_content_std: Annotated[float, Field(ge=0, le=64)] = 3.0
    # Re-score every request after a JPEG-75 re-encode and a halving (3x the compute)
    # unless the request says otherwise (?robustness_check=false).
    robustness_check: bool = False
    # Video (POST /infer/video): upload size, how long a video may be to be answered in
    # the request, frames per video, decode budget, and the limits on hostile files.
    video_max_upload_mb: Annotated[float, Field(gt=0, le=2048)] = 64.0
    video_max_duration_s: Annotated[float, Field(gt=0, le=3600)] = 180.0
    video_frames: Annotated[int, Field(ge=1, le=1024)] = 32
    video_max_frames: Annotated[int, Field(ge=1, le=1024)] = 128
    video_max_pixels: Annotated[int, Field(ge=1024, le=100_000_000)] = 8_294_400
    video_max_streams: Annotated[int, Field(ge=1, le=64)] = 8
    video_decode_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    video_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    video_aggregation: AggregationMethod = "confident"
    # The sustained-run rule: a video holding at least run_min_frames frames judged fake,
    # covering at least run_min_duration_s seconds, with at most run_max_gap frames in a
    # row between two of them, is fake (README, "Video"; why these defaults:
    # veracity.video.aggregate). Two frames at least: one frame never decides a video.
    video_run_min_frames: Annotated[int, Field(ge=2, le=1024)] = 3
    video_run_min_duration_s: Annotated[float, Field(ge=0, le=3600)] = 1.0
    video_run_max_gap: Annotated[int, Field(ge=0, le=64)] = 1
    # Temporal contrast: a stretch of one shot whose every frame scores at least
    # contrast_min_step logits above the shot's median on each side of it is fake (README,
    # "Video"; veracity.video.contrast). 0 turns it off.
    video_contrast_min_step: Annotated[float, Field(ge=0, le=20)] = TemporalContrast.min_step
    # Fairness: videos analysed at once (each also takes one admission slot), and how many
    # places of a forward pass video frames and batch files may take while images wait.
    max_concurrent_videos: Annotated[int, Field(ge=1, le=64)] = 2
    request_batch_share: Annotated[int, Field(ge=1, le=256)] | None = None
    # Batch uploads (POST /infer/batch).
    batch_max_files: Annotated[int, Field(ge=1, le=256)] = 16
    batch_max_upload_mb: Annotated[float, Field(gt=0, le=2048)] = 64.0
    # Asynchronous jobs (POST /jobs/video, /jobs/batch; they need the store): jobs this
    # replica runs at once, how long a job video may be and how long a job may take, the
    # lease a running job holds (a dead worker's job is claimed again after it), how many
    # starts a job gets, and the size of a batch job.
    job_concurrency: Annotated[int, Field(ge=1, le=64)] = 1
    job_video_max_duration_s: Annotated[float, Field(gt=0, le=86_400)] = 1800.0
    job_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 1800.0
    job_lease_s: Annotated[float, Field(ge=5, le=3600)] = 60.0
    job_max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    job_batch_max_files: Annotated[int, Field(ge=1, le=10_000)] = 256
    job_batch_max_upload_mb: Annotated[float, Field(gt=0, le=4096)] = 256.0
    # Uploads of jobs not yet run that the database may hold (all replicas together); a
    # job that would pass it gets 503 with Retry-After, so a burst cannot fill the disk.
    job_queue_max_mb: Annotated[float, Field(gt=0, le=1_048_576)] = 2048.0
    # Webhooks when a job ends: signed with a secret per API key derived from this one
    # (HMAC-SHA256; required to accept a webhook_url), retried with doubling delays, never
    # sent to addresses that are not globally routable unless allowed.
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    webhook_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    webhook_backoff_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    webhook_allow_private: bool = False
    # Signed verdict receipts: an Ed25519 private key (PEM; `veracity receipt-key`), and
    # the public keys of earlier signing keys, still published for verification.
    receipt_signing_key: Path | None = None
    receipt_verify_keys: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # Content credentials (C2PA), read from every upload that carries them: PEM bundles of
    # the roots a signer must chain to for `valid` (none: every sound signature is
    # `valid_untrusted`), and the bounds on each read (a worker process's time and memory).
    provenance_enabled: bool = True
    provenance_trust_anchors: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    provenance_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    provenance_max_memory_mb: Annotated[int, Field(ge=128, le=65_536)] = 512
    provenance_workers: Annotated[int, Field(ge=1, le=32)] = 1

    @field_validator(
        "api_keys",
        "admin_api_keys",
        "receipt_verify_keys",
        "provenance_trust_anchors",
        mode="before",
    )
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("rate_limit")
    @classmethod
    def _parse_rate_limit(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                amount = limits.parse(value).amount
            except ValueError:
                amount = 0
            if amount < 1:
                raise ValueError(
                    f"{value!r} is not a rate; write e.g. 20/second, 600/minute or 5/1second"
                )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("provenance_trust_anchors")
    @classmethod
    def _readable_anchors(cls, value: list[Path]) -> list[Path]:
        load_trust_anchors(value)
        return value

    @model_validator(mode="after")
    def _require_keys(self) -> Settings:
        if not self.auth_disabled and not (self.effective_api_keys or self.admin_keys):
            raise ValueError(
                f"no API key configured: set {ENV_PREFIX}API_KEYS (comma-separated) or "
                f"MODEL_API_KEY, or set {ENV_PREFIX}AUTH_DISABLED=true for local development"
            )
        for key in (*self.effective_api_keys, *self.admin_keys):
            if len(key) < 16:
                raise ValueError(
                    f"API keys must be at least 16 characters ({ENV_PREFIX}API_KEYS / "
                    'MODEL_API_KEY); generate one with `python -c "import secrets; '
                    'print(secrets.token_urlsafe(32))"`'
                )
        return self

    @property
    def effective_api_keys(self) -> tuple[str, ...]:
        keys = [k.get_secret_value() for k in self.api_keys]
        if self.legacy_api_key is not None and self.legacy_api_key.get_secret_value():
            keys.append(self.legacy_api_key.get_secret_value())
        return tuple(dict.fromkeys(keys))

    @property
    def admin_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k.get_secret_value() for k in self.admin_api_keys))

    @property
    def verdict_policy(self) -> VerdictPolicy:
        return VerdictPolicy(
            thresholds=Thresholds(self.real_threshold, self.fake_threshold),
            quality=QualityLimits(self.min_jpeg_quality, self.min_content_std),
            robustness_check=self.robustness_check,
        )

    @property
    def provenance_options(self) -> ProvenanceOptions:
        return ProvenanceOptions(
            enabled=self.provenance_enabled,
            trust_anchors=load_trust_anchors(self.provenance_trust_anchors),
            timeout_s=self.provenance_timeout_s,
            max_memory_bytes=self.provenance_max_memory_mb * 2**20,
            workers=self.provenance_workers,
        )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def video_max_upload_bytes(self) -> int:
        return int(self.video_max_upload_mb * 1024 * 1024)

    @property
    def batch_max_upload_bytes(self) -> int:
        return int(self.batch_max_upload_mb * 1024 * 1024)

    @property
    def decode_budget(self) -> DecodeBudget:
        return DecodeBudget(
            max_jpeg_scans=self.max_jpeg_scans, max_bytes=int(self.max_decode_mb * 2**20)
        )

    @property
    def video_limits(self) -> VideoLimits:
        return VideoLimits(
            max_duration_s=self.video_max_duration_s,
            max_pixels=self.video_max_pixels,
            max_streams=self.video_max_streams,
            max_samples=self.video_max_frames,
            decode_timeout_s=self.video_decode_timeout_s,
        )

    @property
    def video_rule(self) -> AggregationRule:
        """How frame verdicts become a video's (a request may choose another method)."""
        return AggregationRule(
            method=self.video_aggregation,
            run=SustainedRun(
                min_frames=self.video_run_min_frames,
                min_duration_s=self.video_run_min_duration_s,
                max_gap=self.video_run_max_gap,
            ),
            contrast=TemporalContrast(min_step=self.video_contrast_min_step),
        )

    @property
    def job_batch_max_upload_bytes(self) -> int:
        return int(self.job_batch_max_upload_mb * 1024 * 1024)

    @property
    def job_video_limits(self) -> VideoLimits:
        """The video limits, with a job's longer duration and decoding budget."""
        return replace(
            self.video_limits,
            max_duration_s=self.job_video_max_duration_s,
            decode_timeout_s=self.job_timeout_s,
        )

    @property
    def resolved_batch_share(self) -> int:
        """Places of a forward pass that video frames and batch files may take while single
        images wait: an eighth of a batch (one place of 8) unless configured (measured in
        bench/video.py; see bench/README.md, "Video")."""
        return self.request_batch_share or max(1, self.max_batch_size // 8)

    @property
    def resolved_inference_threads(self) -> int:
        """Decode/inference worker threads: one per available CPU unless configured."""
        return self.inference_threads or available_cpus()

    @property
    def resolved_torch_threads(self) -> int:
        """Intra-op threads per forward pass, so that workers x threads <= available CPUs.

        Each worker runs its own forward pass; giving each the full core count would run
        workers x cores threads on cores CPUs.
        """
        return self.torch_threads or max(1, available_cpus() // self.resolved_inference_threads)

    @property
    def resolved_inference_streams(self) -> int:
        """Forward passes that may run at once on a CPU: as many as the cores hold at
        ``resolved_torch_threads`` each (see ``RunnerOptions.streams``)."""
        if self.inference_streams is not None:
            return self.inference_streams
        return max(1, available_cpus() // self.resolved_torch_threads)

    @property
    def runner_options(self) -> RunnerOptions:
        return RunnerOptions(
            device=self.device,
            backend=self.backend,
            precision=self.precision,
            export_dir=self.export_dir,
            workers=self.resolved_inference_threads,
            torch_threads=self.resolved_torch_threads,
            streams=self.resolved_inference_streams,
            max_batch_size=self.max_batch_size,
            batch_wait_s=self.batch_wait_ms / 1000,
        )

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_image_pixels, decode_budget=self.decode_budget)

    @property
    def admission_limits(self) -> AdmissionLimits:
        return AdmissionLimits(
            max_queue=self.max_queue,
            request_timeout_s=self.request_timeout_s,
            video_timeout_s=self.video_timeout_s,
            max_concurrent_videos=self.max_concurrent_videos,
            body_budget_bytes=int(self.body_budget_mb * 2**20),
            batch_share=self.resolved_batch_share,
            drain_s=self.shutdown_drain_s,
        )

    @property
    def registry_options(self) -> RegistryOptions:
        return RegistryOptions(
            memory_budget_bytes=int(self.model_memory_mb * 2**20),
            default_model=self.default_model,
            load_on_demand=self.model_load_on_demand,
            replica_id=self.replica_id or default_replica_id(),
            sync_s=self.model_sync_s,
        )

    @property
    def service_options(self) -> ServiceOptions:
        """What the model service is built with."""
        return ServiceOptions(
            runner=self.runner_options,
            images=self.image_limits,
            policy=self.verdict_policy,
            video_limits=self.video_limits,
            admission=self.admission_limits,
            registry=self.registry_options,
        )


def describe_validation_error(error: Exception) -> list[str]:
    """One line per invalid setting, naming the environment variable to fix."""
    from pydantic import ValidationError

    if not isinstance(error, ValidationError):
        return [str(error)]
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        if field == "legacy_api_key":
            name = "MODEL_API_KEY"
        elif field:
            name = ENV_PREFIX + field.upper()
        else:
            name = "configuration"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}" if field else message)
    return lines
